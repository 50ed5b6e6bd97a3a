"""Rows to the JSON records the API and the event stream show, and the two row reads that
every path shares (a write job's connection or a reader's)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from tether.protocol import CommandState

Record = dict[str, Any]


def device_row(conn: sqlite3.Connection, device_id: str, columns: str = "*") -> sqlite3.Row | None:
    """A device's row, revoked or not (the caller decides what a revoked one means).
    ``columns``: a constant list, where a hot path needs only a few (acceptance, events)."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {columns} FROM devices WHERE id = ?", (device_id,)
    ).fetchone()
    return row


def command_row(conn: sqlite3.Connection, command_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM commands WHERE id = ?", (command_id,)
    ).fetchone()
    return row


def _dumps(value: str | None) -> str:
    """A JSON string (or null): the C string encoder alone, without the encoder's dispatch."""
    return "null" if value is None else _encode_string(value)


_encode_string: Callable[[str], str] = json.encoder.encode_basestring


def command_record_json(row: Mapping[str, Any] | sqlite3.Row) -> str:
    """The same record as :func:`command_record`, as JSON text, splicing the stored JSON of
    ``args`` and ``result`` in as is: the hot path encodes no payload twice."""
    state = CommandState(row["state"])
    times = [f'"queued":{_dumps(row["queued_at"])}']
    for name in ("sent", "delivered"):
        if row[f"{name}_at"]:
            times.append(f'"{name}":{_dumps(row[f"{name}_at"])}')
    if state.is_terminal and row["finished_at"]:
        times.append(f'"{state.value}":{_dumps(row["finished_at"])}')
    return (
        f'{{"id":{_dumps(row["id"])},"device":{_dumps(row["device_id"])},'
        f'"name":{_dumps(row["name"])},"args":{row["args"]},"state":"{state.value}",'
        f'"attempts":{int(row["attempts"])},"issued_at":{_dumps(row["issued_at"])},'
        f'"expires_at":{_dumps(row["expires_at"])},'
        f'"result":{row["result"] if row["result"] is not None else "null"},'
        f'"error":{_dumps(row["error"])},"idempotency_key":{_dumps(row["idempotency_key"])},'
        f'"ended_by":{_dumps(row["ended_by"])},"cancel":{_dumps(row["cancel"])},'
        f'"late":{row["late"] if row["late"] is not None else "null"},'
        f'"times":{{{",".join(times)}}}}}'
    )


def command_record(row: sqlite3.Row) -> Record:
    state = CommandState(row["state"])
    times = {"queued": row["queued_at"]}
    for name in ("sent", "delivered"):
        if row[f"{name}_at"]:
            times[name] = row[f"{name}_at"]
    if state.is_terminal and row["finished_at"]:
        times[state.value] = row["finished_at"]
    return {
        "id": row["id"],
        "device": row["device_id"],
        "name": row["name"],
        "args": json.loads(row["args"]),
        "state": state.value,
        "attempts": row["attempts"],
        "issued_at": row["issued_at"],
        "expires_at": row["expires_at"],
        "result": json.loads(row["result"]) if row["result"] is not None else None,
        "error": row["error"],
        "idempotency_key": row["idempotency_key"],
        "ended_by": row["ended_by"],
        "cancel": row["cancel"],
        "late": json.loads(row["late"]) if row["late"] is not None else None,
        "times": times,
    }


def device_record(row: sqlite3.Row) -> Record:
    return {
        "id": row["id"],
        "username": row["username"],
        "provisioned_at": row["provisioned_at"],
        "revoked": row["revoked_at"] is not None,
        "revoked_at": row["revoked_at"],
        "online": bool(row["online"]),
        "last_seen": row["last_seen"],
        "connected_since": row["connected_since"] if row["online"] else None,
        "agent": row["agent"],
        "features": json.loads(row["features"]),
        # online from a retained status the broker replayed, not yet from the device itself
        "confirmed": bool(row["confirmed"]) if row["online"] else None,
        "reconnects_last_hour": len(json.loads(row["reconnects"])),
        "pending": row["pending"],
    }
