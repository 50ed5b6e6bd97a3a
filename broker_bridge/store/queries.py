"""Read queries of one shard: plain functions of a read connection, for ``ShardedStore.aread``."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from broker_bridge.latency import FINE_BOUNDS
from broker_bridge.store.records import (
    Record,
    command_record,
    command_row,
    device_record,
    device_row,
)
from tether.protocol import PENDING_STATES
from tether.protocol.service import StoredEvent

_PENDING = tuple(s.value for s in PENDING_STATES)
_PENDING_SQL = ",".join("?" * len(_PENDING))


def get_command(conn: sqlite3.Connection, command_id: str) -> Record | None:
    row = command_row(conn, command_id)
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
    row = device_row(conn, device_id)
    if row is None or (row["revoked_at"] is not None and not include_revoked):
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


# ---------------------------------------------------------------------------------------------
# Fleet aggregates and recent history, derived from the commands' per-state times (so they
# survive restarts). Times are RFC 3339 strings that sort as times; a minute is the first 16
# characters ("2026-11-29T12:03").

_PROBLEM_STATES = ("failed", "rejected", "expired", "undeliverable", "timed_out")
_DEVICE_OUTCOMES = ("succeeded", "failed", "rejected", "expired")
_OUTCOMES_SQL = ",".join(f"'{s}'" for s in _DEVICE_OUTCOMES)


def _seconds(later: str, earlier: str) -> str:
    return f"(julianday({later}) - julianday({earlier})) * 86400.0"


def _bucket_sql(value: str) -> str:
    """The index of the :data:`FINE_BOUNDS` bucket holding ``value`` (as ``bisect_left``)."""
    cases = " ".join(f"WHEN {value} <= {b!r} THEN {i}" for i, b in enumerate(FINE_BOUNDS))
    return f"CASE {cases} ELSE {len(FINE_BOUNDS)} END"


# hop → (the duration in seconds, the rows it applies to). Only commands that finished in the
# range count (the ``commands_finished`` index bounds the scan), so every hop of the range's
# history describes the same commands.
HISTORY_HOPS: dict[str, tuple[str, str]] = {
    "accepted_to_sent": (_seconds("sent_at", "queued_at"), "sent_at IS NOT NULL"),
    "sent_to_delivered": (
        _seconds("delivered_at", "sent_at"),
        "delivered_at IS NOT NULL AND sent_at IS NOT NULL",
    ),
    "waiting_for_device": (_seconds("delivered_at", "queued_at"), "delivered_at IS NOT NULL"),
    "delivered_to_final": (
        _seconds("finished_at", "delivered_at"),
        f"delivered_at IS NOT NULL AND state IN ({_OUTCOMES_SQL})",
    ),
    "end_to_end": (_seconds("finished_at", "queued_at"), f"state IN ({_OUTCOMES_SQL})"),
}

# (bucket, count, min seconds, max seconds, sum of seconds)
BucketRow = tuple[int, int, float, float, float]


@dataclass(frozen=True, slots=True)
class ShardHistory:
    finished: list[tuple[str, str, int]]  # (minute, terminal state, count)
    end_to_end: list[tuple[str, int, int, float, float]]  # (minute, bucket, count, min, max)
    hops: dict[str, list[BucketRow]]  # over the whole range


def shard_history(conn: sqlite3.Connection, since: str) -> ShardHistory:
    """Per-minute finished commands and end-to-end latency buckets since ``since``, and each
    hop's latency buckets over the whole range."""
    finished = [
        (str(r[0]), str(r[1]), int(r[2]))
        for r in conn.execute(
            "SELECT substr(finished_at, 1, 16), state, count(*) FROM commands "
            "WHERE finished_at >= ? GROUP BY 1, 2",
            (since,),
        )
    ]
    e2e, condition = HISTORY_HOPS["end_to_end"]
    end_to_end = [
        (str(r[0]), int(r[1]), int(r[2]), float(r[3]), float(r[4]))
        for r in conn.execute(
            f"SELECT minute, {_bucket_sql('d')}, count(*), min(d), max(d) FROM ("
            f"SELECT substr(finished_at, 1, 16) AS minute, max(0.0, {e2e}) AS d FROM commands "
            f"WHERE finished_at >= ? AND {condition}) GROUP BY 1, 2",
            (since,),
        )
    ]
    hops: dict[str, list[BucketRow]] = {}
    for hop, (duration, condition) in HISTORY_HOPS.items():
        hops[hop] = [
            (int(r[0]), int(r[1]), float(r[2]), float(r[3]), float(r[4]))
            for r in conn.execute(
                f"SELECT {_bucket_sql('d')}, count(*), min(d), max(d), sum(d) FROM ("
                f"SELECT max(0.0, {duration}) AS d FROM commands "
                f"WHERE finished_at >= ? AND {condition}) GROUP BY 1",
                (since,),
            )
        ]
    return ShardHistory(finished, end_to_end, hops)


def fleet_counts(conn: sqlite3.Connection, since: str, top: int) -> dict[str, Any]:
    """One shard's part of ``/api/fleet``: devices, commands per state, and the ``top`` devices
    by pending commands, by problems since ``since``, by time the device itself took
    (delivered → final) and by time commands waited for the device (queued → delivered)."""
    devices = conn.execute(
        "SELECT count(*), coalesce(sum(online), 0), coalesce(sum(pending), 0) "
        "FROM devices WHERE revoked_at IS NULL"
    ).fetchone()
    states = dict(conn.execute("SELECT state, count(*) FROM commands GROUP BY state").fetchall())
    by_pending = conn.execute(
        "SELECT id, pending FROM devices WHERE revoked_at IS NULL AND pending > 0 "
        "ORDER BY pending DESC, id LIMIT ?",
        (top,),
    ).fetchall()
    by_failures = conn.execute(
        f"SELECT device_id, count(*) FROM commands WHERE finished_at >= ? "
        f"AND state IN ({','.join('?' * len(_PROBLEM_STATES))}) "
        "GROUP BY device_id ORDER BY count(*) DESC, device_id LIMIT ?",
        (since, *_PROBLEM_STATES, top),
    ).fetchall()
    slowest = conn.execute(
        f"SELECT device_id, avg({_seconds('finished_at', 'delivered_at')}) * 1000.0, "
        f"avg({_seconds('finished_at', 'queued_at')}) * 1000.0, count(*) FROM commands "
        "WHERE finished_at >= ? AND state = 'succeeded' AND delivered_at IS NOT NULL "
        "GROUP BY device_id ORDER BY 2 DESC, device_id LIMIT ?",
        (since, top),
    ).fetchall()
    waits = conn.execute(
        f"SELECT device_id, avg({_seconds('delivered_at', 'queued_at')}) * 1000.0, count(*) "
        "FROM commands WHERE finished_at >= ? AND delivered_at IS NOT NULL "
        "GROUP BY device_id ORDER BY 2 DESC, device_id LIMIT ?",
        (since, top),
    ).fetchall()
    return {
        "devices": devices[0],
        "online": devices[1],
        "pending": devices[2],
        "states": states,
        "by_pending": [tuple(r) for r in by_pending],
        "by_failures": [tuple(r) for r in by_failures],
        "slowest": [tuple(r) for r in slowest],
        "waits": [tuple(r) for r in waits],
    }


def device_events(
    conn: sqlite3.Connection, device_id: str, kinds: tuple[str, ...], limit: int
) -> list[Record]:
    """A device's latest stored events of ``kinds`` (``presence``, ``device_event``), newest
    first, as ``{"kind", "at", "data"}``. Only what the event log still keeps (it is pruned)."""
    rows = conn.execute(
        f"SELECT kind, at, data FROM events WHERE device_id = ? "
        f"AND kind IN ({','.join('?' * len(kinds))}) ORDER BY seq DESC LIMIT ?",
        (device_id, *kinds, limit),
    ).fetchall()
    return [{"kind": r["kind"], "at": r["at"], "data": json.loads(r["data"])} for r in rows]
