"""Read queries of one shard: plain functions of a read connection, for ``ShardedStore.aread``."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from broker_bridge.store.records import Record, command_record, device_record
from broker_bridge.store.shard import StoredEvent
from tether.protocol import PENDING_STATES

_PENDING = tuple(s.value for s in PENDING_STATES)
_PENDING_SQL = ",".join("?" * len(_PENDING))


def get_command(conn: sqlite3.Connection, command_id: str) -> Record | None:
    row = conn.execute("SELECT * FROM commands WHERE id = ?", (command_id,)).fetchone()
    return command_record(row) if row else None


def device_commands(
    conn: sqlite3.Connection,
    device_id: str,
    *,
    state: str | None = None,
    limit: int = 50,
    before: str | None = None,
) -> list[Record]:
    """A device's commands, newest first; ``before`` is a command id to page from."""
    sql = "SELECT * FROM commands WHERE device_id = ?"
    params: list[object] = [device_id]
    if state is not None:
        sql += " AND state = ?"
        params.append(state)
    if before is not None:
        sql += " AND seq < coalesce((SELECT seq FROM commands WHERE id = ? AND device_id = ?), -1)"
        params += [before, device_id]
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(limit)
    return [command_record(row) for row in conn.execute(sql, params)]


def get_device(
    conn: sqlite3.Connection, device_id: str, *, include_revoked: bool = False
) -> Record | None:
    """A device with its last command; a revoked one only with ``include_revoked`` (its record
    says ``revoked``): its history stays readable, but it is gone for sends and provisioning."""
    sql = "SELECT * FROM devices WHERE id = ?"
    if not include_revoked:
        sql += " AND revoked_at IS NULL"
    row = conn.execute(sql, (device_id,)).fetchone()
    if row is None:
        return None
    record = device_record(row)
    last = conn.execute(
        "SELECT * FROM commands WHERE device_id = ? ORDER BY seq DESC LIMIT 1", (device_id,)
    ).fetchone()
    record["last_command"] = command_record(last) if last else None
    return record


def list_devices(conn: sqlite3.Connection, *, revoked: bool = False) -> list[Record]:
    """The shard's active devices, or with ``revoked`` its revoked ones."""
    where = "revoked_at IS NOT NULL" if revoked else "revoked_at IS NULL"
    return [
        device_record(row)
        for row in conn.execute(f"SELECT * FROM devices WHERE {where} ORDER BY id")
    ]


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[StoredEvent]
    pruned_through: int  # events with seq ≤ this are gone
    last_seq: int  # the newest seq in the shard when read


def events_after(conn: sqlite3.Connection, shard: int, after: int, limit: int) -> EventPage:
    conn.execute("BEGIN")  # one snapshot for the page and the bounds
    try:
        pruned = int(
            conn.execute("SELECT value FROM meta WHERE key = 'events_pruned_through'").fetchone()[0]
        )
        last = int(conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
        rows = conn.execute(
            "SELECT seq, kind, device_id, at, data FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    events = [
        StoredEvent(shard, row["seq"], row["kind"], row["device_id"], row["at"], row["data"])
        for row in rows
    ]
    return EventPage(events, pruned, last)
