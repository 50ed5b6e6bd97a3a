"""The store's schema version: a store the previous release wrote opens and is upgraded in place;
a fresh store has exactly the shape the shipped SQL made; a migration is one function, atomic.

The previous release is the one before schema v2 (git: ``c595444~1``): a store of 2 shards with
``PRAGMA user_version = 1``, built here from that release's SQL, copied verbatim below, with
rows the way that release wrote them.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from broker_bridge.policy import DeliveryPolicy
from broker_bridge.sharding import HASH_NAME, shard_for
from broker_bridge.store import jobs, schema
from broker_bridge.store.queries import events_after, get_command, get_device
from broker_bridge.store.sharded import FORMAT, MANIFEST, ShardedStore
from tether.protocol import CommandState

NOW = datetime(2026, 12, 1, tzinfo=UTC)
SHARDS = 2

PREVIOUS_RELEASE_V1 = """
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    provisioned_at TEXT NOT NULL,
    revoked_at TEXT,
    online INTEGER NOT NULL DEFAULT 0,
    last_seen TEXT,
    connected_since TEXT,
    agent TEXT,
    reconnects TEXT NOT NULL DEFAULT '[]',  -- JSON list of recent connect times
    pending INTEGER NOT NULL DEFAULT 0  -- commands not yet terminal, kept by the same writes
);
CREATE TABLE commands (
    seq INTEGER PRIMARY KEY,  -- acceptance order within the shard, hence within each device
    id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    request_hash TEXT,
    issued_at TEXT NOT NULL,
    expires_at TEXT,
    result TEXT,
    error TEXT,
    queued_at TEXT NOT NULL,
    sent_at TEXT,
    delivered_at TEXT,
    finished_at TEXT,
    last_attempt_at TEXT,
    due_at TEXT  -- when the delivery policy must look at it next; NULL once terminal
);
CREATE INDEX commands_device_seq ON commands (device_id, seq);
CREATE INDEX commands_device_state ON commands (device_id, state, seq);
CREATE INDEX commands_due ON commands (due_at) WHERE due_at IS NOT NULL;
CREATE UNIQUE INDEX commands_idempotency ON commands (device_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX commands_finished ON commands (finished_at);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
    kind TEXT NOT NULL,
    device_id TEXT,
    at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('events_pruned_through', '0');
"""

# Schema v2 as it shipped (git: c595444), before it was written with sqlite-utils.
SHIPPED_V2 = """
ALTER TABLE commands ADD COLUMN ended_by TEXT;
ALTER TABLE commands ADD COLUMN cancel TEXT;
ALTER TABLE commands ADD COLUMN late TEXT;
ALTER TABLE devices ADD COLUMN features TEXT NOT NULL DEFAULT '[]';
ALTER TABLE devices ADD COLUMN status_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN status_checked INTEGER NOT NULL DEFAULT 0;
"""

T0 = "2026-11-20T10:00:00.000Z"
T1 = "2026-11-20T10:00:01.000Z"
T2 = "2026-11-20T10:00:02.000Z"


def _command(seq: int, device: str, state: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "seq": seq,
        "id": f"01old-{device}-{seq}",
        "device_id": device,
        "name": "echo",
        "args": json.dumps({"n": seq}),
        "state": state,
        "attempts": 1,
        "idempotency_key": None,
        "request_hash": None,
        "issued_at": T0,
        "expires_at": None,
        "result": None,
        "error": None,
        "queued_at": T0,
        "sent_at": None,
        "delivered_at": None,
        "finished_at": None,
        "last_attempt_at": T0,
        "due_at": None,
    }
    return row | extra


def previous_release_store(data_dir: Path) -> dict[int, dict[str, list[dict[str, Any]]]]:
    """A store as the previous release left it; returns each shard's rows by table."""
    data_dir.mkdir()
    manifest = {"format": FORMAT, "shards": SHARDS, "hash": HASH_NAME}
    (data_dir / MANIFEST).write_text(json.dumps(manifest))
    rows: dict[int, dict[str, list[dict[str, Any]]]] = {
        shard: {"devices": [], "commands": [], "events": []} for shard in range(SHARDS)
    }
    for n, device in enumerate(["pump-1", "pump-2", "valve-7", "gate-3"]):
        shard = shard_for(device, SHARDS)
        seq = len(rows[shard]["commands"])
        commands = [
            _command(seq + 1, device, "succeeded", sent_at=T0, delivered_at=T1,
                     finished_at=T2, result=json.dumps({"n": seq + 1})),
            _command(seq + 2, device, "sent", sent_at=T1, due_at=T2),
            _command(seq + 3, device, "queued", attempts=0, last_attempt_at=None, due_at=T2),
        ]  # fmt: skip
        rows[shard]["commands"] += commands
        rows[shard]["devices"].append(
            {
                "id": device,
                "username": device,
                "provisioned_at": T0,
                "revoked_at": None,
                "online": n % 2,
                "last_seen": T1,
                "connected_since": T1 if n % 2 else None,
                "agent": "tether-agent/0.1",
                "reconnects": json.dumps([T0, T1]),
                "pending": 2,
            }
        )
        for command in commands:
            event = {"kind": "command", "device_id": device, "at": T2, "data": command["args"]}
            rows[shard]["events"].append(event)
    for shard, tables in rows.items():
        conn = sqlite3.connect(data_dir / f"shard-{shard:03d}.sqlite3", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(PREVIOUS_RELEASE_V1)
        conn.execute("PRAGMA user_version = 1")
        for table, table_rows in tables.items():
            for row in table_rows:
                conn.execute(
                    f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    tuple(row.values()),
                )
        conn.close()
    return rows


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_a_store_of_the_previous_release_is_upgraded_in_place(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    before = previous_release_store(data_dir)
    store = ShardedStore(data_dir)
    try:
        assert store.shard_count == SHARDS
        for shard, tables in before.items():
            conn = sqlite3.connect(store.shard_path(shard))
            assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
            assert {"ended_by", "cancel", "late"} <= set(columns(conn, "commands"))
            assert {"features", "status_seen", "confirmed", "status_checked"} <= set(
                columns(conn, "devices")
            )
            conn.row_factory = sqlite3.Row
            for table, table_rows in tables.items():  # every old row and value, unchanged
                keys = list(table_rows[0])
                stored = conn.execute(f"SELECT {', '.join(keys)} FROM {table} ORDER BY rowid")
                assert [dict(row) for row in stored] == table_rows
            defaults = conn.execute(
                "SELECT DISTINCT features, status_seen, confirmed, status_checked FROM devices"
            ).fetchall()
            assert [tuple(row) for row in defaults] == [("[]", 0, 0, 0)]
            conn.close()

        # Readable through the store's own queries.
        old = before[shard_for("pump-1", SHARDS)]["commands"][0]
        reader = store.reader.readers[shard_for("pump-1", SHARDS)].conn()
        record = get_command(reader, old["id"])
        assert record is not None
        assert (record["state"], record["result"], record["device"]) == (
            "succeeded",
            {"n": 1},
            "pump-1",
        )
        device = get_device(reader, "pump-1")
        assert device is not None and device["features"] == [] and device["pending"] == 2
        page = events_after(reader, shard_for("pump-1", SHARDS), 0, 100)
        assert len(page.events) == len(before[shard_for("pump-1", SHARDS)]["events"])

        # Sendable: a new command, and the old pending ones move on; a finished one stays.
        new = jobs.NewCommand("01new-pump-1", "pump-1", "echo", {"n": 99})
        accepted = store.write(
            "pump-1", lambda tx: jobs.accept_command(tx, new, NOW, DeliveryPolicy())
        ).result(10)
        assert accepted.created and accepted.record["state"] == "queued"
        queued = next(c for c in before[shard_for("pump-1", SHARDS)]["commands"]
                      if c["device_id"] == "pump-1" and c["state"] == "queued")  # fmt: skip
        moved = store.write(
            "pump-1", lambda tx: jobs.transition(tx, queued["id"], CommandState.SENT, NOW)
        ).result(10)
        assert moved.applied
        refused = store.write(
            "pump-1", lambda tx: jobs.transition(tx, old["id"], CommandState.FAILED, NOW)
        ).result(10)
        assert not refused.applied
        device = get_device(store.reader.readers[shard_for("pump-1", SHARDS)].conn(), "pump-1")
        assert device is not None and device["pending"] == 3
        later = events_after(reader, shard_for("pump-1", SHARDS), 0, 100).events
        old_top = len(before[shard_for("pump-1", SHARDS)]["events"])
        assert [e.seq for e in later[old_top:]] == sorted(e.seq for e in later[old_top:])
        assert min(e.seq for e in later[old_top:]) > old_top  # event seqs go on, not reused
    finally:
        store.close()
    ShardedStore(data_dir).close()  # opening again changes nothing
    conn = sqlite3.connect(data_dir / "shard-000.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    conn.close()


def _shape(conn: sqlite3.Connection) -> dict[str, Any]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    shape: dict[str, Any] = {"version": conn.execute("PRAGMA user_version").fetchone()[0]}
    for table in sorted(tables):
        shape[table] = [tuple(row) for row in conn.execute(f"PRAGMA table_xinfo({table})")]
        indexes = conn.execute(f"PRAGMA index_list({table})").fetchall()
        shape[f"{table} indexes"] = sorted(tuple(row)[1:] for row in indexes)
    return shape


def test_a_fresh_store_has_the_shape_the_shipped_sql_made() -> None:
    fresh = sqlite3.connect(":memory:", isolation_level=None)
    assert schema.migrate(fresh) == schema.SCHEMA_VERSION == 2
    shipped = sqlite3.connect(":memory:", isolation_level=None)
    shipped.executescript(PREVIOUS_RELEASE_V1 + SHIPPED_V2 + "PRAGMA user_version = 2;")
    assert _shape(fresh) == _shape(shipped)


def test_a_migration_is_one_function_and_runs_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "shard.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn)
    conn.execute(
        "INSERT INTO devices (id, username, provisioned_at) VALUES ('pump-1', 'pump-1', ?)", (T0,)
    )
    current = schema.SCHEMA_VERSION

    def v3_half_done(db: Database) -> None:
        db.table("devices").add_column("tags", str, not_null_default="{}")
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, v3_half_done])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    with pytest.raises(RuntimeError, match="disk full"):
        schema.migrate(conn)
    assert schema.schema_version(conn) == current
    assert "tags" not in columns(conn, "devices")

    def v3_tags(db: Database) -> None:
        db.table("devices").add_column("tags", str, not_null_default="{}")

    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS[:current], v3_tags])
    assert schema.migrate(conn) == current + 1
    assert schema.schema_version(conn) == current + 1
    assert conn.execute("SELECT id, tags FROM devices").fetchall() == [("pump-1", "{}")]
    conn.close()
