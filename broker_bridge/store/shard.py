"""One shard: a SQLite file in WAL mode, written by one thread at a time with group commit.

Writes are jobs (functions of a :class:`WriteTx`) queued to the shard's writer. The writer
takes every job waiting (up to ``max_batch``) and commits them in one transaction: one fsync for
the whole batch. If a job raises, the batch runs again with a SAVEPOINT per job, so that job rolls
back alone. A job's future resolves, and its events are announced, only after COMMIT returned.

Several shards share one writer thread (a :class:`WriterLoop`): Python threads share one GIL,
and every SQLite call releases and retakes it, so eight writer threads spent more time handing
the GIL to each other than writing (bench/store_transitions.py on 2 cores: one shard 8,774
transitions/s, eight shards with a thread each 3,435/s). The loop takes every job waiting,
groups them by shard and commits each shard's group in turn, so group commit stays per shard.
In the bridge the loop has no thread of its own: the MQTT session's I/O thread drains it between
network reads (``WriterLoop(wake=...)``), so an ack is received and committed on one thread.

``synchronous=FULL`` (the default) makes every commit durable before it is acknowledged, against a
process kill and against power loss; with group commit this costs one fsync per batch, not per row.
``NORMAL`` survives a killed process but may lose the last commits on power loss.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from broker_bridge.store.schema import migrate
from tether.protocol import utc_now
from tether.protocol.errors import TetherError, Unavailable
from tether.protocol.service import StoredEvent

log = logging.getLogger(__name__)

T = TypeVar("T")
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


class WriteTx:
    """What a write job sees: the shard's connection inside the open transaction, and ``emit``."""

    def __init__(self, conn: sqlite3.Connection, shard: int) -> None:
        self.conn = conn
        self.shard = shard
        self.events: list[StoredEvent] = []

    def emit(
        self,
        kind: str,
        device_id: str | None,
        data: dict[str, Any] | str,
        at: str | None = None,
    ) -> StoredEvent:
        """Append an event; ``data`` is a dict or its JSON text; ``at`` defaults to now."""
        at = at or utc_now()
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        cur = self.conn.execute(
            "INSERT INTO events (kind, device_id, at, data) VALUES (?, ?, ?, ?)",
            (kind, device_id, at, text),
        )
        event = StoredEvent(self.shard, int(cur.lastrowid or 0), kind, device_id, at, text)
        self.events.append(event)
        return event


def connect(path: Path, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    if synchronous not in SYNCHRONOUS_LEVELS:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_LEVELS}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


Outcome = Callable[[Any, BaseException | None], None]


class _Then:
    """A job's outcome handed to a callback, ``then(value, None)`` or ``then(None, error)``,
    on the committing thread: the bridge's own hot path, where a ``Future`` (a lock and a
    condition each) cost more than the rest of the bookkeeping."""

    __slots__ = ("then",)

    def __init__(self, then: Outcome) -> None:
        self.then = then

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, value: Any) -> None:
        self._call(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._call(None, error)

    def _call(self, value: Any, error: BaseException | None) -> None:
        try:
            self.then(value, error)
        except Exception:  # as a Future does with its callbacks: log, and go on
            log.exception("a store job's callback failed")


@dataclass
class _Job(Generic[T]):
    fn: Callable[[WriteTx], T]
    future: Future[T] | _Then


_STOP = object()


class WriterLoop:
    """Commits for any number of shards, each shard's waiting jobs together: on a thread of
    its own, or, given ``wake``, on the thread of whoever calls :meth:`drain` (the bridge's
    I/O thread, which then receives, commits and acknowledges without handing work across)."""

    def __init__(
        self,
        name: str = "store-writer",
        max_batch: int = 1024,
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[ShardWriter, _Job[Any]] | object] = queue.SimpleQueue()
        self._wake = wake
        self._thread: threading.Thread | None = None
        if wake is None:
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def submit(self, writer: ShardWriter, job: _Job[Any]) -> None:
        self._queue.put((writer, job))
        if self._wake is not None:
            self._wake()

    def drain(self) -> bool:
        """Commit what is queued now, without waiting; False if nothing was."""
        items: list[tuple[ShardWriter, _Job[Any]]] = []
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get_nowait())  # type: ignore[arg-type]
            except queue.Empty:
                break
        if items:
            self._commit(items)
        return bool(items)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop."""
        if self._thread is None:
            while self.drain():
                pass
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            items: list[tuple[ShardWriter, _Job[Any]]] = [first]  # type: ignore[list-item]
            stop_after = False
            while len(items) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop_after = True
                    break
                items.append(item)  # type: ignore[arg-type]
            self._commit(items)
            if stop_after:
                return

    @staticmethod
    def _commit(items: list[tuple[ShardWriter, _Job[Any]]]) -> None:
        by_shard: dict[ShardWriter, list[_Job[Any]]] = {}  # first-come shard order
        for writer, job in items:
            by_shard.setdefault(writer, []).append(job)
        for writer, batch in by_shard.items():
            writer._run_batch(batch)


class ShardWriter:
    """One shard's connection and its group commit; the commits run on the store's
    :class:`WriterLoop`, shared by every shard."""

    def __init__(
        self,
        path: Path,
        shard: int,
        *,
        synchronous: str = "FULL",
        on_commit: Callable[[list[StoredEvent]], None] | None,
        loop: WriterLoop,
    ) -> None:
        self.path = path
        self.shard = shard
        self._on_commit = on_commit
        self._conn = connect(path, synchronous)
        migrate(self._conn)
        self._loop = loop
        self.batches = 0
        self.jobs = 0

    def submit(self, fn: Callable[[WriteTx], T]) -> Future[T]:
        future: Future[T] = Future()
        self._loop.submit(self, _Job(fn, future))
        return future

    def submit_then(self, fn: Callable[[WriteTx], Any], then: Outcome) -> None:
        """Like :meth:`submit`, with the outcome passed to ``then`` on the committing thread."""
        self._loop.submit(self, _Job(fn, _Then(then)))

    def close(self) -> None:
        """Close the connection; the store drains the shared loop first."""
        self._conn.close()

    def _run_batch(self, batch: list[_Job[Any]]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        try:
            try:
                outcomes = self._transaction(live, isolate=False)
            except _JobRaised:
                # Rare: a job refused (queue_full, conflict, ...). Run the batch again with a
                # savepoint per job, so that job rolls back alone and the others still commit.
                outcomes = self._transaction(live, isolate=True)
        except sqlite3.Error as exc:
            # The batch could not be stored (disk full, read-only file, I/O error): nothing of it
            # was committed, so every job fails and no event is announced.
            log.error("shard %d: %d jobs not stored: %s", self.shard, len(live), exc)
            error = StoreUnavailable(self.shard, str(exc))
            for job in live:
                job.future.set_exception(error)
            return
        self.batches += 1
        self.jobs += len(outcomes)
        committed = [event for _, ok, _, events in outcomes if ok for event in events]
        if committed and self._on_commit is not None:
            try:
                self._on_commit(committed)
            except Exception:
                log.exception("shard %d: event listener failed", self.shard)
        for job, ok, value, _ in outcomes:
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _transaction(
        self, jobs: list[_Job[Any]], *, isolate: bool
    ) -> list[tuple[_Job[Any], bool, Any, list[StoredEvent]]]:
        """Run ``jobs`` in one transaction and commit. Without ``isolate`` the first job that
        raises aborts it all (``_JobRaised``); with it, each job has its own savepoint."""
        conn = self._conn
        outcomes: list[tuple[_Job[Any], bool, Any, list[StoredEvent]]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                tx = WriteTx(conn, self.shard)
                if isolate:
                    conn.execute("SAVEPOINT job")
                try:
                    value = job.fn(tx)
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    if not isolate:
                        raise _JobRaised from exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, False, exc, []))
                    continue
                if isolate:
                    conn.execute("RELEASE job")
                outcomes.append((job, True, value, tx.events))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("shard %d: rollback failed", self.shard)
            raise
        return outcomes


class _JobRaised(TetherError):
    """A job refused its change: the batch runs again with a savepoint per job."""


class StoreUnavailable(Unavailable, RuntimeError):
    """A shard could not commit: the write did not happen and may be retried."""

    def __init__(self, shard: int, reason: str) -> None:
        self.shard = shard
        self.reason = reason
        super().__init__(f"shard {shard} could not store the change: {reason}")


class ShardReader:
    """Read-only connections to one shard, one per reading thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
