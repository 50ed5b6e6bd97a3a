"""One stack per data directory: an exclusive ``flock`` on ``<data-dir>/tether.lock``.

Two stacks on one data directory rewrite each other's broker config and write into the same
store and logs. Whoever runs on a data directory (``tether up``, ``tether gateway``, ``tether
bridge``) takes this lock first, before it touches anything else there. The kernel releases a
``flock`` when the last descriptor of its open file goes away, so a crashed or SIGKILLed holder
never leaves a stale lock behind. The holder writes who it is (pid, command, ports) into the
lock file, so the one refused can say whom to stop.

``tether up`` hands its lock to the gateway it starts: the child inherits the locked
descriptor (``pass_fds``) and finds its number in ``TETHER_DATA_DIR_LOCK_FD``; a ``flock`` on
that same open file succeeds, on any other it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from tether.protocol.errors import TetherError

LOCK_FILE_NAME = "tether.lock"
INHERITED_FD_VARIABLE = "TETHER_DATA_DIR_LOCK_FD"


class DataDirError(TetherError, RuntimeError):
    """The data directory cannot be held: a user error, reported in one line."""


class DataDirBusy(DataDirError):
    """Another process holds the data directory; ``holder`` is what it wrote (maybe empty)."""

    code, status = "conflict", 409

    def __init__(self, data_dir: Path, holder: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(
            f"{data_dir} is in use by {describe_holder(holder)}; "
            "stop it first or choose another --data-dir"
        )


def describe_holder(holder: dict[str, Any]) -> str:
    """``another Tether stack (pid 4242: tether up, mqtt port 18830, http port 8080)``."""
    details = []
    if "pid" in holder:
        details.append(f"pid {holder['pid']}")
    if "command" in holder:
        details.append(f"tether {holder['command']}")
    for key in ("mqtt_port", "http_port"):
        if holder.get(key) is not None:
            details.append(f"{key.replace('_', ' ')} {holder[key]}")
    return "another Tether process" + (f" ({', '.join(details)})" if details else "")


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        holder = json.loads(text)
    except (OSError, ValueError):  # being written right now, or not ours
        return {}
    return holder if isinstance(holder, dict) else {}


def _inherited_fd(path: Path) -> int | None:
    """The lock file's descriptor handed down by a parent stack, if there is one for ``path``."""
    text = os.environ.get(INHERITED_FD_VARIABLE, "")
    if not text.isdigit():
        return None
    fd = int(text)
    try:
        mine, theirs = os.fstat(fd), os.stat(path)
    except OSError:
        return None
    return fd if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino) else None


class DataDirLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process ends)."""

    def __init__(self, data_dir: Path, fd: int, inherited: bool) -> None:
        self.data_dir = data_dir
        self.fd = fd
        self.inherited = inherited

    @classmethod
    def acquire(cls, data_dir: Path, command: str, **ports: int | None) -> DataDirLock:
        """Create ``data_dir`` if needed and lock it, or raise :class:`DataDirBusy`, or
        :class:`DataDirError` if the directory or the lock file cannot be created."""
        data_dir = data_dir.resolve()
        path = data_dir / LOCK_FILE_NAME
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            inherited = _inherited_fd(path)
            fd = (
                inherited if inherited is not None else os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            )
        except OSError as exc:
            raise DataDirError(f"cannot use {data_dir}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            if inherited is None:
                os.close(fd)
            raise DataDirBusy(data_dir, holder) from None
        if inherited is None:  # a parent's record names the whole stack: keep it
            record = {"pid": os.getpid(), "command": command, **ports}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        return cls(data_dir, fd, inherited is not None)

    def child_env(self) -> dict[str, str]:
        """Environment for a child that inherits this lock (start it with ``pass_fds=[fd]``)."""
        return {INHERITED_FD_VARIABLE: str(self.fd)}

    def release(self) -> None:
        if self.fd < 0:
            return
        if not self.inherited:  # a child leaves the parent's record in place
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
        os.close(self.fd)  # the lock goes with the last descriptor of the open file
        self.fd = -1

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
