"""Sample a running process with py-spy and summarise where its CPU goes.

``Profile(pid, seconds)`` starts ``py-spy record`` (non-blocking sampling, per-thread stacks, idle
threads left out, so samples are CPU work) in the background; ``result()`` waits for it and
returns the top functions by self and inclusive samples and the busiest threads.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    self_counts: collections.Counter[str] = collections.Counter()
    incl_counts: collections.Counter[str] = collections.Counter()
    thread_counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        if thread.startswith("thread") or thread.startswith("process"):
            frames = frames[1:]
            while frames and (frames[0].startswith("thread") or frames[0].startswith("process")):
                frames = frames[1:]
        thread_name = re.sub(r"\s*\(0x[0-9a-fA-F]+\)", "", thread)
        thread_counts[thread_name] += count
        total += count
        if frames:
            self_counts[_short(frames[-1])] += count
        for name in {_short(f) for f in frames}:
            incl_counts[name] += count

    def share(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]

    return {
        "samples": total,
        "threads_pct": share(thread_counts),
        "self_pct": share(self_counts),
        "inclusive_pct": share(incl_counts),
    }


def classify_native(raw: str) -> dict[str, Any]:
    """For ``--native`` samples: the share of each thread's samples waiting to take the GIL back
    (``pthread_cond_timedwait`` under a C call that had released it, e.g. around
    ``sqlite3_step``), in fsync, inside SQLite, or elsewhere; per thread kind."""
    kinds: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        frames = stack.split(";")
        thread = re.sub(r"\s*\(\d+\)|\s*\(0x[0-9a-f]+\)|^thread\s*", "", frames[0]).strip()
        kind = re.sub(r"-\d+-", "-N-", thread).strip(" :") or "?"
        tail = frames[-5:]
        leaf = frames[-1]
        if any("pthread_cond_timedwait" in f or "take_gil" in f for f in tail) and not any(
            x in stack for x in ("select", "epoll", "_queue_SimpleQueue_get", "lock_PyThread")
        ):
            cat = "gil_wait"
        elif any(x in leaf for x in ("fdatasync", "fsync")):
            cat = "fsync"
        elif "libsqlite3" in leaf or "sqlite3" in leaf.split(" (")[0]:
            cat = "in_sqlite"
        elif any(x in stack for x in ("epoll", "select", "SimpleQueue_get", "lock_PyThread")):
            cat = "idle_wait"
        else:
            cat = "other"
        kinds[kind][cat] += n
    out = {}
    for kind, counter in kinds.items():
        total = sum(counter.values())
        if counter["idle_wait"] >= 0.99 * total:
            continue  # threads that only waited: left out
        out[kind] = {"samples": total, **{k: round(100 * v / total, 1) for k, v in counter.items()}}
    return out


class Profile:
    def __init__(
        self, pid: int, seconds: float, rate: int = 200, gil: bool = False, native: bool = False
    ) -> None:
        self.native = native
        self.out = Path(tempfile.mkstemp(prefix="tether-pyspy-", suffix=".txt")[1])
        binary = py_spy()
        self.proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        if binary is None:
            self.error = "py-spy not installed (.venv/bin/pip install py-spy)"
            return
        argv = [
            binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(max(1, seconds))),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(self.out),
            "--threads",
        ]
        if native:
            argv += ["--native", "--idle"]  # blocking: pauses the target at each sample
        else:
            argv.append("--nonblocking")
        if gil:
            argv.append("--gil")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def result(self, timeout: float = 60) -> dict[str, Any]:
        if self.proc is None:
            return {"error": self.error}
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        try:
            raw = self.out.read_text()
        except OSError:
            raw = ""
        finally:
            if not os.environ.get("BENCH_KEEP_PROFILES"):  # set it to read whole stacks later
                self.out.unlink(missing_ok=True)
        if os.environ.get("BENCH_KEEP_PROFILES"):
            print(f"py-spy stacks kept in {self.out}", file=sys.stderr)
        if not raw:
            return {"error": f"py-spy produced nothing: {err.decode(errors='replace')[-300:]}"}
        if self.native:
            return {"native_by_thread_kind": classify_native(raw), **summarize(raw, top=8)}
        return summarize(raw)
