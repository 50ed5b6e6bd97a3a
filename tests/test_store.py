"""The sharded store on real SQLite files: routing, group commit, isolation, manifest."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker_bridge.sharding import shard_for
from broker_bridge.store import jobs
from broker_bridge.store.queries import device_commands, events_after, get_device
from broker_bridge.store.schema import SCHEMA_VERSION, SchemaError, migrate
from broker_bridge.store.shard import StoreUnavailable, WriteTx
from broker_bridge.store.sharded import ShardedStore, StoreConfigError
from tether.protocol.service import NewCommand

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ShardedStore]:
    s = ShardedStore(tmp_path / "store", 4)
    yield s
    s.close()


def test_shard_choice_is_a_stable_hash() -> None:
    # Pinned values: changing the hash would orphan every existing device's rows.
    devices = ("dev-1", "dev-2", "pump.7", "a")
    assert [shard_for(d, 8) for d in devices] == [7, 1, 0, 7]
    assert [shard_for(d, 16) for d in devices] == [15, 1, 0, 15]
    spread = {shard_for(f"dev-{i}", 8) for i in range(200)}
    assert spread == set(range(8))


def test_reopening_with_another_shard_count_is_refused(tmp_path: Path) -> None:
    ShardedStore(tmp_path, 4).close()
    with pytest.raises(StoreConfigError, match="created with 4 shards"):
        ShardedStore(tmp_path, 8)
    reopened = ShardedStore(tmp_path)  # no count given: the manifest decides
    assert reopened.shard_count == 4
    reopened.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    assert migrate(conn) == SCHEMA_VERSION  # idempotent
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer"):
        migrate(conn)


def test_writes_are_group_committed(store: ShardedStore) -> None:
    store.write("dev-1", lambda tx: jobs.create_device(tx, "dev-1", "dev-1", NOW)).result()
    writer = store.writers[store.shard_of("dev-1")]
    batches_before = writer.batches
    gate = threading.Event()
    blocker = writer.submit(lambda tx: gate.wait(10))  # holds the writer while work piles up
    futures = [
        store.write("dev-1", lambda tx, i=i: tx.emit("device_event", "dev-1", {"i": i}))
        for i in range(500)
    ]
    gate.set()
    blocker.result(10)
    seqs = [f.result(10).seq for f in futures]
    assert seqs == sorted(seqs) and len(set(seqs)) == 500
    assert writer.batches - batches_before <= 3  # 501 jobs, a handful of commits


def test_a_failing_job_rolls_back_alone(store: ShardedStore) -> None:
    gate = threading.Event()
    shard = store.shard_of("dev-1")
    store.write_shard(shard, lambda tx: gate.wait(10))

    def fails(tx: WriteTx) -> None:
        tx.emit("device_event", "dev-1", {"doomed": True})
        raise ValueError("boom")

    good = store.write("dev-1", lambda tx: tx.emit("device_event", "dev-1", {"ok": 1}))
    bad = store.write("dev-1", fails)
    good2 = store.write("dev-1", lambda tx: tx.emit("device_event", "dev-1", {"ok": 2}))
    gate.set()
    with pytest.raises(ValueError, match="boom"):
        bad.result(10)
    assert good.result(10) and good2.result(10)
    page = store.read(shard, lambda c: events_after(c, shard, 0, 100)).result()
    assert [e.data for e in page.events] == [{"ok": 1}, {"ok": 2}]


def test_events_are_announced_only_after_commit(store: ShardedStore) -> None:
    seen: list[int] = []
    shard = store.shard_of("dev-1")

    def listener(events: list[object]) -> None:
        # Visible to a fresh reader at announcement time: it was committed first.
        page = store.read(shard, lambda c: events_after(c, shard, 0, 1000)).result()
        seen.extend(e.seq for e in page.events)

    store.add_listener(listener)
    event = store.write("dev-1", lambda tx: tx.emit("device_event", "dev-1", {})).result(10)
    assert event.seq in seen


def test_a_read_only_shard_fails_clearly_and_recovers(store: ShardedStore, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # Root ignores file modes; make the shard's database read-only through SQLite instead.
        shard = store.shard_of("dev-1")
        writer = store.writers[shard]
        writer.submit(lambda tx: None).result()
        writer._conn.execute("PRAGMA query_only = ON")
        with pytest.raises(StoreUnavailable, match="shard"):
            store.write("dev-1", lambda tx: tx.emit("device_event", "dev-1", {})).result(10)
        writer._conn.execute("PRAGMA query_only = OFF")
    event = store.write("dev-1", lambda tx: tx.emit("device_event", "dev-1", {})).result(10)
    assert event.seq >= 1


def test_device_rows_live_in_their_shard(store: ShardedStore) -> None:
    for i in range(20):
        device = f"dev-{i}"
        store.write(device, lambda tx, d=device: jobs.create_device(tx, d, d, NOW)).result()
    for i in range(20):
        device = f"dev-{i}"
        for shard in range(store.shard_count):
            found = store.read(shard, lambda c, d=device: get_device(c, d)).result()
            assert (found is not None) == (shard == store.shard_of(device))


def test_history_pages_newest_first(store: ShardedStore) -> None:
    from broker_bridge.policy import DeliveryPolicy

    store.write("d", lambda tx: jobs.create_device(tx, "d", "d", NOW)).result()
    ids = []
    for i in range(5):
        new = NewCommand(f"id-{i}", "d", "echo", {"i": i})
        ids.append(
            store.write("d", lambda tx, n=new: jobs.accept_command(tx, n, NOW, DeliveryPolicy()))
            .result()
            .record["id"]
        )
    shard = store.shard_of("d")
    first = store.read(shard, lambda c: device_commands(c, "d", limit=2)).result()
    assert [r["id"] for r in first] == ["id-4", "id-3"]
    rest = store.read(shard, lambda c: device_commands(c, "d", limit=10, before="id-3")).result()
    assert [r["id"] for r in rest] == ["id-2", "id-1", "id-0"]
