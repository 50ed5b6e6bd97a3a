"""Shared plumbing of the benchmarks: machine facts, a private broker, the server side (bridge
workers and gateways), the simulator, process accounting and small statistics.

Everything runs on 127.0.0.1, on free ports, under a temporary directory, and every process a
benchmark starts is stopped by its ``Harness`` (children also get SIGTERM if the benchmark dies:
Linux parent-death signal). Nothing here talks to a broker on 1883.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devices.provision import DeviceCredentials, save_credentials  # noqa: E402
from mosquitto import dynsec  # noqa: E402
from mosquitto.config import BrokerSettings, render_broker_files  # noqa: E402
from mosquitto.process import MosquittoProcess, die_with_parent, free_port  # noqa: E402
from tether_cli.paho_tuning import share_property_tables  # noqa: E402

# The benchmarks are programs: they measure what `tether` runs, so they opt in as its main does.
share_property_tables()

PREFIX = "tether"
ADMIN_USER = "tether-bridge"
ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(8)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- facts and statistics -------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mosq = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        m = re.search(r"mosquitto version (\S+)", out.stdout + out.stderr)
        mosq = m.group(1) if m else mosq
    git = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        git = {"head": head, "modified_files": len(dirty.splitlines()) if dirty else 0}
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": mosq,
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": git,
    }


def pct(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summarize_ms(values_s: Iterable[float]) -> dict[str, Any]:
    values = sorted(v * 1000 for v in values_s)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(pct(values, 50) or 0, 2),
        "p90_ms": round(pct(values, 90) or 0, 2),
        "p99_ms": round(pct(values, 99) or 0, 2),
        "max_ms": round(values[-1], 2),
    }


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def emit(result: dict[str, Any]) -> None:
    """The one JSON document a benchmark prints, as its last stdout line."""
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


# --- per-process accounting ------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - idle - guest) / CLK_TCK


class CpuMeter:
    """CPU seconds each named process used between ``start()`` and ``stop()``, and what every
    other process on the machine used meanwhile (``others``: other people's work on a shared
    box shows up here, and the figures of that interval are then pessimistic)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self._sys0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._sys0 = system_busy_seconds()

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        used = {name: cpu_seconds(pid) - self._c0[name] for name, pid in self.pids.items()}
        busy = system_busy_seconds() - self._sys0
        used["others"] = max(0.0, busy - sum(used.values()))
        return {
            "wall_s": round(wall, 2),
            "cpu_s": {name: round(v, 2) for name, v in used.items()},
            "cores": {name: round(v / wall, 2) if wall else None for name, v in used.items()},
            "machine_busy_cores": round(busy / wall, 2) if wall else None,
        }


def cpu_per_command(
    cpu: dict[str, Any], commands: int, totals: dict[str, Iterable[str]]
) -> dict[str, Any]:
    """Milliseconds of CPU per command from a :class:`CpuMeter` report over ``commands``
    commands: per process, and summed over each named set of processes (``totals``, e.g.
    ``{"tether": [workers, gateways, "mosquitto"]}``: issue 16's rule counts the broker)."""
    if commands <= 0:
        return {"commands": commands}
    used = cpu["cpu_s"]
    out: dict[str, Any] = {
        "commands": commands,
        "per_process_ms": {n: round(v * 1000 / commands, 3) for n, v in used.items()},
    }
    for label, names in totals.items():
        out[f"{label}_ms"] = round(sum(used.get(n, 0.0) for n in names) * 1000 / commands, 3)
    return out


# --- broker ----------------------------------------------------------------------------------


def device_ids(count: int, prefix: str = "dev-") -> list[str]:
    width = max(5, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


class Broker:
    """A Mosquitto with Tether's own config on a free port; devices may be written into its
    dynamic-security file before it starts (``file_devices``), which is instant, unlike live
    provisioning over ``$CONTROL`` (Mosquitto 2.0.11 rewrites the file after every command)."""

    def __init__(
        self, work: Path, file_devices: list[str] | None = None, inflight: int | None = None
    ) -> None:
        self.work = work
        self.inflight = inflight
        self.admin_password = secrets.token_urlsafe(18)
        self.settings = BrokerSettings(port=free_port(), data_dir=work / "mosquitto")
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.credentials: list[DeviceCredentials] = []
        if file_devices:
            self.credentials = self._write_devices(file_devices)
        self.proc = MosquittoProcess(
            self.settings, ADMIN_USER, self.admin_password, die_with_parent=True
        )

    @property
    def port(self) -> int:
        return self.settings.port

    def _write_devices(self, ids: list[str]) -> list[DeviceCredentials]:
        render_broker_files(self.settings, ADMIN_USER, self.admin_password)
        document = json.loads(self.settings.dynsec_path.read_text())
        creds = []
        for device_id in ids:
            password = secrets.token_urlsafe(18)
            role = dynsec.device_role_name(device_id)
            document["roles"].append(
                {"rolename": role, "acls": dynsec.device_role_acls(PREFIX, device_id)}
            )
            document["clients"].append(
                {
                    "username": device_id,
                    "clientid": device_id,
                    "textName": f"Tether device {device_id}",
                    "roles": [{"rolename": role}],
                    **dynsec.hash_password(password),
                }
            )
            creds.append(DeviceCredentials(device_id, device_id, password))
        self.settings.dynsec_path.write_text(json.dumps(document))
        return creds

    def start(self) -> None:
        if self.inflight is None:
            self.proc.start(timeout=60)
            return
        # An experiment only: the shipped config with another max_inflight_messages. Render it,
        # patch the copy in this temp dir, and run Mosquitto on it (the template is untouched).
        from mosquitto.process import find_mosquitto, wait_for_port

        conf = render_broker_files(self.settings, ADMIN_USER, self.admin_password)
        text = conf.read_text()
        patched = re.sub(
            r"^max_inflight_messages .*$",
            f"max_inflight_messages {self.inflight}",
            text,
            flags=re.M,
        )
        assert patched != text or f"max_inflight_messages {self.inflight}" in text
        alt = conf.with_name("mosquitto-bench.conf")
        alt.write_text(patched)
        with (self.settings.data_dir / "mosquitto.log").open("ab") as out:
            self._alt = subprocess.Popen(
                [find_mosquitto(), "-c", str(alt)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        wait_for_port("127.0.0.1", self.port, time.monotonic() + 60, self._alt.poll)

    def log_lines(self, needle: str) -> list[str]:
        """Lines of the broker's log holding ``needle`` (e.g. dropped-message warnings)."""
        with contextlib.suppress(OSError):
            text = (self.settings.data_dir / "mosquitto.log").read_text(errors="replace")
            return [line for line in text.splitlines() if needle in line]
        return []

    def stop(self) -> None:
        alt = getattr(self, "_alt", None)
        if alt is not None:
            if alt.poll() is None:
                alt.send_signal(signal.SIGTERM)
                try:
                    alt.wait(10)
                except subprocess.TimeoutExpired:
                    alt.kill()
                    alt.wait()
            self._alt = None
            return
        self.proc.stop()

    @property
    def pid(self) -> int:
        alt = getattr(self, "_alt", None)
        return alt.pid if alt is not None else (self.proc.pid or 0)


def seed_store(data_dir: Path, ids: list[str], shards: int | None = None) -> float:
    """Create devices in the command store directly (what ``POST /api/devices`` does after the
    broker side), before the workers open it. Returns the seconds it took."""
    from broker_bridge.store import jobs
    from broker_bridge.store.sharded import ShardedStore

    t0 = time.monotonic()
    store = ShardedStore(data_dir / "store", shards)
    now = _dt.datetime.now(_dt.UTC)
    futures = [store.write(i, lambda tx, i=i: jobs.create_device(tx, i, i, now)) for i in ids]
    for f in futures:
        f.result()
    store.close()
    return time.monotonic() - t0


# --- the server side: bridge workers and gateways ------------------------------------------


class Server:
    """Tether's server side as ``tether up`` runs it: ``workers`` bridge workers (``tether
    bridge``; each owns its share of the store's shard groups through the group leases) and
    ``gateways`` stateless gateways (``tether gateway``) sharing one HTTP port (SO_REUSEPORT).

    The store is laid out here first (``groups`` shard groups, 2 by default, like ``tether up``)
    so every worker agrees on it; with one worker that worker owns every group. ``pids`` names
    every process (``worker-0``, ``gateway-0``, ...): CPU per command is summed over all of them.
    """

    def __init__(
        self,
        broker: Broker,
        work: Path,
        *,
        workers: int = 1,
        gateways: int = 1,
        groups: int | None = 2,
        shards: int | None = None,
        worker_args: list[str] | None = None,
        gateway_args: list[str] | None = None,
    ) -> None:
        self.broker = broker
        self.work = work
        self.workers = workers
        self.gateways = gateways
        self.groups = groups
        self.shards = shards
        self.port = free_port()
        self.worker_args = worker_args or []
        self.gateway_args = gateway_args or []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?token={ADMIN_TOKEN}"

    @property
    def pids(self) -> dict[str, int]:
        """Every server process by name (workers first, then gateways)."""
        return {name: proc.pid for name, proc in self.procs.items()}

    def pids_of(self, kind: str) -> dict[str, int]:
        """``worker`` or ``gateway`` processes only."""
        return {n: p for n, p in self.pids.items() if n.startswith(kind + "-")}

    @property
    def topology(self) -> str:
        return f"{self.workers}+{self.gateways}"

    def _argv(self, command: str) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "tether_cli",
            command,
            "--data-dir",
            str(self.work),
            "--mqtt-port",
            str(self.broker.port),
            "--mqtt-username",
            ADMIN_USER,
            f"--mqtt-password={self.broker.admin_password}",  # may start with "-"
        ]
        if self.shards is not None:
            argv += ["--shards", str(self.shards)]
        return argv

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.logs[name] = self.work / f"{name}.log"
        with self.logs[name].open("ab") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**os.environ, "TETHER_ADMIN_TOKEN": ADMIN_TOKEN},
                preexec_fn=die_with_parent,
            )

    def start(self, timeout: float = 60) -> None:
        from broker_bridge.store.sharded import open_layout

        open_layout(self.work / "store", self.shards, self.groups)
        for i in range(self.workers):
            worker = ["--worker-name", f"worker-{i}", "--worker-index", str(i)]
            self._spawn(
                f"worker-{i}",
                [
                    *self._argv("bridge"),
                    *worker,
                    "--workers",
                    str(self.workers),
                    *self.worker_args,
                ],
            )
        for i in range(self.gateways):
            argv = [*self._argv("gateway"), "--http-port", str(self.port), *self.gateway_args]
            self._spawn(f"gateway-{i}", argv)
        self._wait_ready(time.monotonic() + timeout)

    def _wait_ready(self, deadline: float) -> None:
        """/readyz answers 200 (every group has an owner) and every gateway says uvicorn is
        serving (the shared port may hand the probe to any one of them)."""
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while True:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
                ready = False
                with contextlib.suppress(httpx.HTTPError):
                    ready = client.get("/readyz").status_code == 200
                if ready and all(
                    "startup complete" in self.logs[n].read_text(errors="replace")
                    for n in self.pids_of("gateway")
                ):
                    return
                if time.monotonic() > deadline:
                    tails = "\n".join(f"{n}: {self.log_tail(n)}" for n in self.procs)
                    raise RuntimeError(f"server not ready in time:\n{tails}")
                time.sleep(0.1)  # polling children's readiness

    def api(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=timeout
        )

    def online(self) -> int:
        with self.api() as api:
            return int(api.get("/api/fleet").json()["devices"]["online"])

    def wait_online(self, count: int, timeout: float) -> float | None:
        """Seconds until the bridge counts ``count`` devices online (None: not in time)."""
        t0 = time.monotonic()
        with self.api() as api:
            while time.monotonic() - t0 < timeout:
                with contextlib.suppress(httpx.HTTPError):
                    if api.get("/api/fleet").json()["devices"]["online"] >= count:
                        return time.monotonic() - t0
                time.sleep(0.25)  # polling the fleet while devices connect
        return None

    def provision_rest(self, ids: list[str], path: Path, workers: int = 8) -> float:
        from tether_cli.fleet import provision_fleet

        t0 = time.monotonic()
        with self.api(timeout=120) as api:
            provision_fleet(api, ids, path, workers=workers)
        return time.monotonic() - t0

    def cpu_seconds(self) -> float:
        """CPU seconds used so far by every server process together."""
        return sum(cpu_seconds(pid) for pid in self.pids.values())

    def rss_mib(self) -> dict[str, float]:
        return {name: rss_mib(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        """Gateways first (their clients go), then the workers."""
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(list(self.procs.values())):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = {}

    def log_tail(self, name: str, n: int = 20) -> str:
        with contextlib.suppress(OSError, KeyError):
            return "\n".join(self.logs[name].read_text(errors="replace").splitlines()[-n:])
        return ""


# --- simulator -------------------------------------------------------------------------------


class Simulator:
    """``tether simulate N`` in its own process; its JSON report lines are collected."""

    def __init__(
        self,
        credentials: Path,
        count: int,
        broker_port: int,
        work: Path,
        *,
        latency: float = 0.0,
        report_every: float = 1.0,
        connect_concurrency: int = 64,
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "tether_cli",
            "simulate",
            str(count),
            "--credentials",
            str(credentials),
            "--broker",
            f"127.0.0.1:{broker_port}",
            "--latency",
            str(latency),
            "--report-every",
            str(report_every),
            "--connect-concurrency",
            str(connect_concurrency),
        ]
        self.count = count
        self.log_path = work / f"simulator-{secrets.token_hex(3)}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.records: list[tuple[float, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self.launched = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def start(self) -> None:
        self.launched = time.monotonic()
        with self.log_path.open("ab") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=ROOT,
                preexec_fn=die_with_parent,
            )
        threading.Thread(target=self._read, daemon=True, name="sim-reader").start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                with self._cond:
                    self.records.append((time.monotonic(), record))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, after: float = 0.0
    ) -> tuple[float, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = 0
            while True:
                for at, rec in self.records[seen:]:
                    if at >= after and pred(rec):
                        return at, rec
                seen = len(self.records)
                left = deadline - time.monotonic()
                if left <= 0 or (
                    self.proc is not None
                    and self.proc.poll() is not None
                    and seen == len(self.records)
                ):
                    return None
                self._cond.wait(min(left, 0.5))

    def wait_all_connected(self, timeout: float) -> dict[str, Any] | None:
        got = self.wait_for(lambda r: r.get("type") == "all_connected", timeout)
        return got[1] if got else None

    def fresh_stats(self, timeout: float = 5.0) -> dict[str, Any] | None:
        """The first ``stats`` line produced after now (its counters are cumulative)."""
        got = self.wait_for(lambda r: r.get("type") == "stats", timeout, after=time.monotonic())
        return got[1] if got else None

    def stop(self) -> dict[str, Any] | None:
        """SIGTERM (devices say offline, disconnect); returns the final ``stopped`` report."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.1)  # let the reader thread take the last line
        self.proc = None
        stopped = [r for _, r in self.records if r.get("type") == "stopped"]
        return stopped[-1] if stopped else None


def save_creds(path: Path, creds: list[DeviceCredentials]) -> Path:
    save_credentials(path, creds)
    return path


# --- the harness: a temp dir, and everything stopped at the end, in reverse -----------------


class Harness(contextlib.ExitStack):
    def __init__(self, name: str, keep: bool = False) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix=f"tether-bench-{name}-"))
        self.keep = keep or bool(os.environ.get("TETHER_BENCH_KEEP"))
        self.callback(self._cleanup_dir)

    def _cleanup_dir(self) -> None:
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"kept {self.work}")

    def broker(self, file_devices: list[str] | None = None, inflight: int | None = None) -> Broker:
        broker = Broker(self.work, file_devices, inflight)
        broker.start()
        self.callback(broker.stop)
        return broker

    def server(self, broker: Broker, **kw: Any) -> Server:
        """Bridge workers and gateways (see :class:`Server`), running when this returns."""
        server = Server(broker, self.work, **kw)
        self.callback(server.stop)
        server.start()
        return server

    def simulator(self, credentials: Path, count: int, broker: Broker, **kw: Any) -> Simulator:
        sim = Simulator(credentials, count, broker.port, self.work, **kw)
        self.callback(sim.stop)
        sim.start()
        return sim
