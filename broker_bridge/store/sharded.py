"""N shard files under one data directory, with a manifest that fixes N for the store's life."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from broker_bridge.errors import Unavailable
from broker_bridge.sharding import HASH_NAME, shard_for
from broker_bridge.store.shard import (
    Outcome,
    ShardReader,
    ShardWriter,
    WriterLoop,
    WriteTx,
)
from tether.protocol.errors import TetherError
from tether.protocol.service import ShardStatus, StoredEvent

T = TypeVar("T")
MANIFEST = "store.json"
FORMAT = 1
DEFAULT_SHARDS = 8
DEFAULT_GROUPS = 2  # shard groups: each owned by one bridge worker at a time


class StoreConfigError(TetherError, RuntimeError):
    """The store on disk does not match what was asked for (shard count, format, hash)."""


class NotOwner(Unavailable):
    """A write for a shard this process does not own (another worker writes it)."""


@dataclass(frozen=True, slots=True)
class ShardResult(Generic[T]):
    """One shard's answer to a fan-out read: a value, or the error that shard raised."""

    shard: int
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def status(self) -> ShardStatus:
        return ShardStatus(self.shard, self.error)


def read_manifest(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / MANIFEST
    if not path.exists():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def _write_manifest(data_dir: Path, shard_count: int, groups: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f"{MANIFEST}.{os.getpid()}.tmp"
    layout = {"format": FORMAT, "shards": shard_count, "hash": HASH_NAME, "groups": groups}
    tmp.write_text(json.dumps(layout))
    os.replace(tmp, data_dir / MANIFEST)


def open_layout(
    data_dir: Path, shard_count: int | None = None, groups: int | None = None
) -> tuple[int, int]:
    """The store's shard count and shard groups: created with a new store, fixed after
    (a store from before groups gets the default, written back)."""
    manifest = read_manifest(data_dir)
    if manifest is None:
        count = shard_count or DEFAULT_SHARDS
        if count < 1:
            raise StoreConfigError("a store needs at least one shard")
        chosen = min(groups or DEFAULT_GROUPS, count)
        if chosen < 1:
            raise StoreConfigError("a store needs at least one shard group")
        _write_manifest(data_dir, count, chosen)
        return count, chosen
    count = _shard_count(data_dir, manifest, shard_count)
    stored = manifest.get("groups")
    if stored is None:
        stored = min(groups or DEFAULT_GROUPS, count)
        _write_manifest(data_dir, count, stored)
    if groups is not None and groups != stored:
        raise StoreConfigError(
            f"the store in {data_dir} has {stored} shard groups, not {groups}: the groups' "
            "broker sessions hold their devices' subscriptions. Use --groups "
            f"{stored} (or a new data directory)."
        )
    return count, int(stored)


def check_layout(data_dir: Path, shard_count: int | None) -> None:
    """Refuse a shard count the existing store was not made with (nothing is written)."""
    manifest = read_manifest(data_dir)
    if manifest is not None:
        _shard_count(data_dir, manifest, shard_count)


class StoreReader:
    """Read-only access to every shard of a store: what any process may open, next to the one
    process that writes each shard (SQLite's WAL lets readers and a writer work at once)."""

    def __init__(self, data_dir: Path) -> None:
        if read_manifest(data_dir) is None:
            raise StoreConfigError(f"no store in {data_dir} (no {MANIFEST})")
        self.data_dir = data_dir
        self.shard_count, self.groups = open_layout(data_dir)
        self.readers = [ShardReader(shard_path(data_dir, i)) for i in range(self.shard_count)]
        self._read_pool = ThreadPoolExecutor(
            max_workers=max(2, self.shard_count), thread_name_prefix="shard-read"
        )

    def shard_of(self, device_id: str) -> int:
        return shard_for(device_id, self.shard_count)

    def read(self, shard: int, fn: Callable[[Any], T]) -> Future[T]:
        reader = self.readers[shard]
        return self._read_pool.submit(lambda: fn(reader.conn()))

    async def aread(self, shard: int, fn: Callable[[Any], T]) -> T:
        return await asyncio.wrap_future(self.read(shard, fn))

    async def aread_device(self, device_id: str, fn: Callable[[Any], T]) -> T:
        return await self.aread(self.shard_of(device_id), fn)

    async def fan_out(self, fn: Callable[[Any], T]) -> list[ShardResult[T]]:
        """Run ``fn(conn)`` on every shard concurrently; a failing shard is reported, not hidden."""
        futures = [asyncio.wrap_future(self.read(i, fn)) for i in range(self.shard_count)]
        results: list[ShardResult[T]] = []
        for shard, outcome in enumerate(await asyncio.gather(*futures, return_exceptions=True)):
            if isinstance(outcome, BaseException):
                results.append(ShardResult(shard, error=f"{type(outcome).__name__}: {outcome}"))
            else:
                results.append(ShardResult(shard, value=outcome))
        return results

    def close(self) -> None:
        self._read_pool.shutdown(wait=True)
        for reader in self.readers:
            reader.close()


def shard_path(data_dir: Path, shard: int) -> Path:
    return data_dir / f"shard-{shard:03d}.sqlite3"


def _shard_count(data_dir: Path, manifest: dict[str, Any], asked: int | None) -> int:
    if manifest.get("format") != FORMAT or manifest.get("hash") != HASH_NAME:
        raise StoreConfigError(f"{data_dir / MANIFEST}: unknown store format {manifest}")
    count = int(manifest["shards"])
    if asked is not None and asked != count:
        raise StoreConfigError(
            f"the store in {data_dir} was created with {count} shards; opening it with "
            f"{asked} would put devices in the wrong shard. Use --shards {count} "
            "(or a new data directory)."
        )
    return count


class ShardedStore:
    """Routes each device's writes to its shard's writer; fans reads out to every shard."""

    def __init__(
        self,
        data_dir: Path,
        shard_count: int | None = None,
        *,
        synchronous: str = "FULL",
        on_commit: Callable[[list[StoredEvent]], None] | None = None,
        wake: Callable[[], None] | None = None,
        groups: int | None = None,
        owned: Iterable[int] | None = None,
    ) -> None:
        """Every shard commits on one thread (see :class:`WriterLoop`): the store's own, or,
        given ``wake``, the caller's: ``wake`` is called when writes wait, and that thread runs
        :meth:`drain_writes`. ``owned``: the shards this process writes (all if None); only
        their files are opened for writing."""
        count, self.groups = open_layout(data_dir, shard_count, groups)
        self.data_dir = data_dir
        self.shard_count = count
        self.owned = tuple(sorted(set(range(count) if owned is None else owned)))
        if not set(self.owned) <= set(range(count)):
            raise StoreConfigError(f"shards {self.owned} are not all in 0..{count - 1}")
        self._listeners: list[Callable[[list[StoredEvent]], None]] = []
        if on_commit is not None:
            self._listeners.append(on_commit)
        self._writes = WriterLoop(wake=wake)
        self.writers = {
            i: ShardWriter(
                self.shard_path(i),
                i,
                synchronous=synchronous,
                on_commit=self._announce,
                loop=self._writes,
            )
            for i in self.owned
        }
        self.reader = StoreReader(data_dir)

    def shard_path(self, shard: int) -> Path:
        return shard_path(self.data_dir, shard)

    def shard_of(self, device_id: str) -> int:
        return shard_for(device_id, self.shard_count)

    def add_listener(self, listener: Callable[[list[StoredEvent]], None]) -> None:
        """Called on the committing thread, after each commit, with that commit's events."""
        self._listeners.append(listener)

    def _announce(self, events: list[StoredEvent]) -> None:
        for listener in list(self._listeners):
            listener(events)

    # writes

    def writer(self, shard: int) -> ShardWriter:
        try:
            return self.writers[shard]
        except KeyError:
            raise NotOwner(f"shard {shard} is written by another worker") from None

    def write(self, device_id: str, fn: Callable[[WriteTx], T]) -> Future[T]:
        return self.writer(self.shard_of(device_id)).submit(fn)

    def write_then(self, device_id: str, fn: Callable[[WriteTx], Any], then: Outcome) -> None:
        """Like :meth:`write`, without a future: ``then(value, error)`` runs on the committing
        thread once the change is committed (or refused)."""
        self.writer(self.shard_of(device_id)).submit_then(fn, then)

    def drain_writes(self) -> bool:
        """With ``wake``: commit what waits now (on this thread); False if nothing did."""
        return self._writes.drain()

    def write_shard(self, shard: int, fn: Callable[[WriteTx], T]) -> Future[T]:
        return self.writer(shard).submit(fn)

    async def awrite(self, device_id: str, fn: Callable[[WriteTx], T]) -> T:
        return await asyncio.wrap_future(self.write(device_id, fn))

    async def awrite_shard(self, shard: int, fn: Callable[[WriteTx], T]) -> T:
        return await asyncio.wrap_future(self.write_shard(shard, fn))

    # reads

    def read(self, shard: int, fn: Callable[[Any], T]) -> Future[T]:
        return self.reader.read(shard, fn)

    async def aread(self, shard: int, fn: Callable[[Any], T]) -> T:
        return await self.reader.aread(shard, fn)

    async def aread_device(self, device_id: str, fn: Callable[[Any], T]) -> T:
        return await self.reader.aread_device(device_id, fn)

    async def fan_out(self, fn: Callable[[Any], T]) -> list[ShardResult[T]]:
        return await self.reader.fan_out(fn)

    def close(self) -> None:
        self._writes.close()
        for writer in self.writers.values():
            writer.close()
        self.reader.close()
