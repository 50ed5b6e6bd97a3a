"""Which worker writes which shards: shard groups, each held by one worker through a lease.

A store's shards are dealt into a fixed number of groups (``shard mod groups``). A worker owns a
group while it holds an exclusive ``flock`` on ``<data-dir>/leases/group-<g>.lock``; the kernel
releases it when the process dies, however it dies, so a standby worker (or a restarted one)
takes the group over at once. The lease comes first, the group's MQTT session second: a second
process with the same client id would disconnect the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

LEASE_DIR = "leases"


def shards_of(group: int, groups: int, shard_count: int) -> tuple[int, ...]:
    return tuple(shard for shard in range(shard_count) if shard % groups == group)


def group_of(shard: int, groups: int) -> int:
    return shard % groups


def group_client_id(base: str, group: int) -> str:
    """The MQTT client id of a group's persistent session (``tether-bridge-g0``...)."""
    return f"{base}-g{group}"


class GroupLease:
    def __init__(self, data_dir: Path, group: int) -> None:
        self.group = group
        self.path = data_dir / LEASE_DIR / f"group-{group}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_take(self, holder: dict[str, Any]) -> bool:
        """Take the lease if nobody holds it; write who holds it into the file."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        record = {**holder, "pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return True

    def is_free(self) -> bool:
        """Whether nobody holds the lease right now (checked by taking and dropping it)."""
        if self._fd is not None:
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # closing drops the lock if it was taken
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def lease_holder(data_dir: Path, group: int) -> dict[str, Any] | None:
    """Who holds a group's lease now (None if nobody): for ``tether status``."""
    path = data_dir / LEASE_DIR / f"group-{group}.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                holder = {}
            return holder if isinstance(holder, dict) else {}
        return None
    finally:
        os.close(fd)
