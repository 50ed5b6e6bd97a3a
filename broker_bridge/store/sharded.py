"""N shard files under one data directory, with a manifest that fixes N for the store's life."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from broker_bridge.sharding import HASH_NAME, shard_for
from broker_bridge.store.shard import (
    Outcome,
    ShardReader,
    ShardWriter,
    StoredEvent,
    WriterLoop,
    WriteTx,
)
from tether.protocol.errors import TetherError

T = TypeVar("T")
MANIFEST = "store.json"
FORMAT = 1
DEFAULT_SHARDS = 8


class StoreConfigError(TetherError, RuntimeError):
    """The store on disk does not match what was asked for (shard count, format, hash)."""


@dataclass(frozen=True, slots=True)
class ShardResult(Generic[T]):
    """One shard's answer to a fan-out read: a value, or the error that shard raised."""

    shard: int
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_manifest(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / MANIFEST
    if not path.exists():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def _write_manifest(data_dir: Path, shard_count: int) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "shards": shard_count, "hash": HASH_NAME}))
    os.replace(tmp, data_dir / MANIFEST)


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
    ) -> None:
        """Every shard commits on one thread (see :class:`WriterLoop`): the store's own, or,
        given ``wake``, the caller's: ``wake`` is called when writes wait, and that thread runs
        :meth:`drain_writes`."""
        manifest = read_manifest(data_dir)
        if manifest is None:
            count = shard_count or DEFAULT_SHARDS
            if count < 1:
                raise StoreConfigError("a store needs at least one shard")
            _write_manifest(data_dir, count)
        else:
            if manifest.get("format") != FORMAT or manifest.get("hash") != HASH_NAME:
                raise StoreConfigError(f"{data_dir / MANIFEST}: unknown store format {manifest}")
            count = int(manifest["shards"])
            if shard_count is not None and shard_count != count:
                raise StoreConfigError(
                    f"the store in {data_dir} was created with {count} shards; opening it with "
                    f"{shard_count} would put devices in the wrong shard. Use --shards {count} "
                    "(or a new data directory)."
                )
        self.data_dir = data_dir
        self.shard_count = count
        self._listeners: list[Callable[[list[StoredEvent]], None]] = []
        if on_commit is not None:
            self._listeners.append(on_commit)
        self._writes = WriterLoop(wake=wake)
        self.writers = [
            ShardWriter(
                self.shard_path(i),
                i,
                synchronous=synchronous,
                on_commit=self._announce,
                loop=self._writes,
            )
            for i in range(count)
        ]
        self.readers = [ShardReader(self.shard_path(i)) for i in range(count)]
        self._read_pool = ThreadPoolExecutor(
            max_workers=max(2, count), thread_name_prefix="shard-read"
        )

    def shard_path(self, shard: int) -> Path:
        return self.data_dir / f"shard-{shard:03d}.sqlite3"

    def shard_of(self, device_id: str) -> int:
        return shard_for(device_id, self.shard_count)

    def add_listener(self, listener: Callable[[list[StoredEvent]], None]) -> None:
        """Called on the committing thread, after each commit, with that commit's events."""
        self._listeners.append(listener)

    def _announce(self, events: list[StoredEvent]) -> None:
        for listener in list(self._listeners):
            listener(events)

    # writes

    def write(self, device_id: str, fn: Callable[[WriteTx], T]) -> Future[T]:
        return self.writers[self.shard_of(device_id)].submit(fn)

    def write_then(self, device_id: str, fn: Callable[[WriteTx], Any], then: Outcome) -> None:
        """Like :meth:`write`, without a future: ``then(value, error)`` runs on the committing
        thread once the change is committed (or refused)."""
        self.writers[self.shard_of(device_id)].submit_then(fn, then)

    def drain_writes(self) -> bool:
        """With ``wake``: commit what waits now (on this thread); False if nothing did."""
        return self._writes.drain()

    def write_shard(self, shard: int, fn: Callable[[WriteTx], T]) -> Future[T]:
        return self.writers[shard].submit(fn)

    async def awrite(self, device_id: str, fn: Callable[[WriteTx], T]) -> T:
        return await asyncio.wrap_future(self.write(device_id, fn))

    async def awrite_shard(self, shard: int, fn: Callable[[WriteTx], T]) -> T:
        return await asyncio.wrap_future(self.write_shard(shard, fn))

    # reads

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
        self._writes.close()
        for writer in self.writers:
            writer.close()
        self._read_pool.shutdown(wait=True)
        for reader in self.readers:
            reader.close()
