"""Write jobs: each runs inside one shard transaction, on the thread that commits the store.

Every state change goes through :func:`tether.protocol.decide`, so a duplicate, late or
out-of-order input never moves a command backwards. Each change emits its event in the same
transaction, so a change is committed before it is announced, and never announced if it is not.
What the delivery policy does with a command (publish, hold, wait, expire, give up, time out) is
decided by :func:`broker_bridge.delivery.plan`; the jobs here read rows and carry it out.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker_bridge import delivery
from broker_bridge.delivery import (
    CommandView,
    DeviceView,
    Expire,
    GiveUp,
    Hold,
    Occasion,
    Publish,
    Settle,
    TimeOut,
    Wait,
    later,
    plan,
)
from broker_bridge.errors import Conflict, NotFound, QueueFull, UnknownDevice
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store.records import (
    Record,
    command_record_json,
    command_row,
    device_record,
    device_row,
)
from broker_bridge.store.shard import WriteTx
from tether.protocol import (
    PENDING_STATES,
    AckMessage,
    AckStatus,
    CommandState,
    Verdict,
    decide,
    format_time,
)
from tether.protocol.outcomes import CancelMode, EndedBy, is_late, plan_cancel
from tether.protocol.service import NewCommand
from tether.protocol.states import ALLOWED_SOURCES

S = CommandState
_PENDING = tuple(s.value for s in PENDING_STATES)
_UNDELIVERED = (S.QUEUED.value, S.SENT.value)
_UNFINISHED = (*_UNDELIVERED, S.DELIVERED.value)
_PENDING_SQL = ",".join("?" * len(_PENDING))


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # one, not one per call


def _json(value: Any) -> str:
    return _ENCODER.encode(value)


# --- devices ------------------------------------------------------------------------------


def _device_record(tx: WriteTx, device_id: str) -> Record:
    """The record of a device this job has just written."""
    row = device_row(tx.conn, device_id)
    assert row is not None, "a device written in this transaction is there"
    return device_record(row)


def create_device(tx: WriteTx, device_id: str, username: str, now: datetime) -> Record:
    existing = device_row(tx.conn, device_id, "revoked_at")
    if existing is not None and existing["revoked_at"] is None:
        raise Conflict(f"device {device_id!r} already exists")
    # A revoked id may be provisioned again; its command history stays.
    tx.conn.execute(
        "INSERT INTO devices (id, username, provisioned_at) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET username = excluded.username, "
        "provisioned_at = excluded.provisioned_at, revoked_at = NULL, online = 0, "
        "reconnects = '[]', status_seen = 0, confirmed = 0, features = '[]'",
        (device_id, username, format_time(now)),
    )
    record = _device_record(tx, device_id)
    tx.emit("presence", device_id, record)
    return record


def revoke_device(tx: WriteTx, device_id: str, now: datetime) -> Record:
    row = device_row(tx.conn, device_id)
    if row is None or row["revoked_at"] is not None:
        raise UnknownDevice(f"no device {device_id!r}")
    stamp = format_time(now)
    tx.conn.execute(
        "UPDATE devices SET revoked_at = ?, online = 0 WHERE id = ?", (stamp, device_id)
    )
    undelivered = tx.conn.execute(
        "SELECT id FROM commands WHERE device_id = ? AND state IN (?, ?) ORDER BY seq",
        (device_id, *_UNDELIVERED),
    ).fetchall()
    for (command_id,) in undelivered:
        transition(tx, command_id, S.UNDELIVERABLE, now, error="device revoked")
    record = _device_record(tx, device_id)
    tx.emit("presence", device_id, record)
    return record


@dataclass(frozen=True, slots=True)
class PresenceChange:
    known: bool
    changed: bool
    came_online: bool
    record: Record | None = None


def update_presence(
    tx: WriteTx,
    device_id: str,
    online: bool,
    agent: str | None,
    now: datetime,
    *,
    fresh_connect: bool = False,
    live: bool = True,
    features: tuple[str, ...] | None = None,
) -> PresenceChange:
    """Record a status message. ``fresh_connect``: a live (not retained) ``online`` status, i.e.
    the device just connected, even if we never saw it leave (a broker crash loses Last Wills).
    ``live``: not a retained replay; only the device itself confirms that it is online."""
    row = device_row(tx.conn, device_id)
    if row is None or row["revoked_at"] is not None:
        return PresenceChange(known=False, changed=False, came_online=False)
    stamp = format_time(now)
    was_online = bool(row["online"])
    came_online = online and (not was_online or fresh_connect)
    reconnects = [t for t in json.loads(row["reconnects"]) if t > later(now, -3600)]
    connected_since = row["connected_since"]
    if came_online:
        reconnects.append(stamp)
        connected_since = stamp
    confirmed = int(live) if came_online or not online else max(row["confirmed"], int(live))
    tx.conn.execute(
        "UPDATE devices SET online = ?, last_seen = ?, connected_since = ?, agent = ?, "
        "reconnects = ?, features = ?, status_seen = 1, status_checked = 1, confirmed = ? "
        "WHERE id = ?",
        (
            int(online),
            stamp if live else row["last_seen"],
            connected_since,
            agent or row["agent"],
            _json(reconnects),
            row["features"] if features is None else _json(list(features)),
            confirmed,
            device_id,
        ),
    )
    changed = online != was_online or came_online or confirmed != row["confirmed"]
    record = None
    if changed:
        record = _device_record(tx, device_id)
        tx.emit("presence", device_id, record)
    return PresenceChange(True, changed, came_online, record)


def touch_device(tx: WriteTx, device_id: str, now: datetime) -> None:
    """The device spoke (an event or an ack): it is connected now, whatever was replayed."""
    tx.conn.execute(
        "UPDATE devices SET last_seen = ?, confirmed = 1 WHERE id = ?",
        (format_time(now), device_id),
    )


def begin_presence_check(tx: WriteTx) -> None:
    """Bridge start: what the store says of presence is from before. Until the broker replays a
    device's retained status (or the device speaks), its presence is unconfirmed."""
    tx.conn.execute("UPDATE devices SET confirmed = 0, status_checked = 0")


def end_presence_check(tx: WriteTx, now: datetime) -> None:
    """The broker has replayed every retained status: a device the store holds online but the
    broker has no status for (cleared on a password change or revoke) is offline."""
    rows = tx.conn.execute(
        "UPDATE devices SET online = 0 WHERE online = 1 AND status_checked = 0 "
        "AND revoked_at IS NULL RETURNING *"
    ).fetchall()
    for row in rows:
        tx.emit("presence", row["id"], device_record(row), at=format_time(now))


def record_device_event(
    tx: WriteTx, device_id: str, name: str, data: Any, at: str, now: datetime
) -> bool:
    known = device_row(tx.conn, device_id, "revoked_at")
    if known is None or known["revoked_at"] is not None:
        return False
    touch_device(tx, device_id, now)
    tx.emit("device_event", device_id, {"device": device_id, "name": name, "data": data, "at": at})
    return True


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    record_json: str
    created: bool  # False: an earlier command with the same idempotency key and body
    delivery: Delivery | None = None  # the first publish, already counted as attempt 1

    @property
    def record(self) -> Record:
        value: Record = json.loads(self.record_json)
        return value


def accept_command(tx: WriteTx, new: NewCommand, now: datetime, policy: DeliveryPolicy) -> Accepted:
    conn = tx.conn
    device = device_row(conn, new.device_id, "revoked_at, pending, online, status_seen")
    if device is None or device["revoked_at"] is not None:
        raise UnknownDevice(f"no device {new.device_id!r}")
    if new.idempotency_key is not None:
        earlier = conn.execute(
            "SELECT * FROM commands WHERE device_id = ? AND idempotency_key = ?",
            (new.device_id, new.idempotency_key),
        ).fetchone()
        if earlier is not None:
            if earlier["request_hash"] != new.request_hash:
                raise Conflict("this Idempotency-Key was used with a different request")
            return Accepted(command_record_json(earlier), created=False)
    # The same command again (a gateway retrying a request whose answer it lost): one command.
    same = conn.execute("SELECT * FROM commands WHERE id = ?", (new.id,)).fetchone()
    if same is not None:
        if (same["device_id"], same["name"]) != (new.device_id, new.name):
            raise Conflict(f"command id {new.id!r} is taken by another command")
        return Accepted(command_record_json(same), created=False)
    if device["pending"] >= policy.pending_limit:
        raise QueueFull(
            f"device {new.device_id!r} has {device['pending']} pending commands "
            f"(limit {policy.pending_limit})"
        )
    stamp = format_time(now)
    expires_at = delivery.expires_at(now, new.ttl, policy)
    # A device known to be offline gets nothing in its broker session: the command waits here,
    # where cancel and TTL are exact, and goes out when the device is back (redeliver_device).
    action = plan(
        CommandView(S.QUEUED, 0, expires_at), _device_view(device), now, policy, Occasion.HANDOFF
    )
    if isinstance(action, Publish):
        attempts, last_attempt_at, due_at = action.attempts, stamp, action.due_at
    else:  # held (or ended at once, below): only the TTL is due
        attempts, last_attempt_at, due_at = 0, None, expires_at
    row: dict[str, Any] = {
        "id": new.id,
        "device_id": new.device_id,
        "name": new.name,
        "args": _json(new.args),
        "state": S.QUEUED.value,
        "attempts": attempts,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash,
        "issued_at": stamp,
        "expires_at": expires_at,
        "queued_at": stamp,
        "last_attempt_at": last_attempt_at,
        "due_at": due_at,
    }
    cur = conn.execute(
        f"INSERT INTO commands ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
        tuple(row.values()),
    )
    conn.execute("UPDATE devices SET pending = pending + 1 WHERE id = ?", (new.device_id,))
    row |= {
        "sent_at": None,
        "delivered_at": None,
        "finished_at": None,
        "result": None,
        "error": None,
        "ended_by": None,
        "cancel": None,
        "late": None,
    }
    record_json = command_record_json(row)
    tx.emit("command", new.device_id, record_json)
    match action:
        case Publish():
            seq = int(cur.lastrowid or 0)
            first = Delivery(seq, new.id, new.device_id, new.name, new.args, stamp, expires_at)
            return Accepted(record_json, created=True, delivery=first)
        case Expire() | GiveUp() | TimeOut():  # only a TTL of 0 or less: it ends at once
            ended = transition(tx, new.id, action.state, now, error=action.error)
            assert ended.record_json is not None
            return Accepted(ended.record_json, created=True)
        case _:
            return Accepted(record_json, created=True)


@dataclass(frozen=True, slots=True)
class Transition:
    verdict: Verdict | None  # None: no such command (or it belongs to another device)
    record_json: str | None = None
    reason: str = ""
    late: bool = False  # not a move: the device's report was kept as the late outcome

    @property
    def applied(self) -> bool:
        return self.verdict is Verdict.APPLY

    @property
    def record(self) -> Record | None:
        if self.record_json is None:
            return None
        value: Record = json.loads(self.record_json)
        return value


def transition(
    tx: WriteTx,
    command_id: str,
    target: CommandState,
    now: datetime,
    *,
    device_id: str | None = None,
    result: Any = None,
    error: str | None = None,
    policy: DeliveryPolicy | None = None,
    ended_by: EndedBy = EndedBy.TETHER,
    cancel: CancelMode | None = None,
) -> Transition:
    """Move a command to ``target`` if that is a forward move; else change nothing.

    The hot path is one conditional ``UPDATE … RETURNING``: it applies exactly when the command
    is in one of ``ALLOWED_SOURCES[target]`` (what :func:`decide` calls APPLY). Only when it
    matches nothing is the row read, to tell why."""
    stamp = format_time(now)
    sets: dict[str, Any] = {"state": target.value}
    if target is S.SENT:
        sets["sent_at"] = stamp
    elif target is S.DELIVERED:
        sets["delivered_at"] = stamp
        sets["due_at"] = delivery.delivered_due(now, policy or DeliveryPolicy())
    if target.is_terminal:
        sets["finished_at"] = stamp
        sets["due_at"] = None
        sets["ended_by"] = ended_by.value
        if cancel is not None:
            sets["cancel"] = cancel.value
        if target is S.SUCCEEDED:
            sets["result"] = _json(result)
        if error is not None:
            sets["error"] = error
    sources, sources_sql = _SOURCES[target]
    where = f"id = ? AND state IN ({sources_sql})"
    params: tuple[Any, ...] = (*sets.values(), command_id, *sources)
    if device_id is not None:
        where += " AND device_id = ?"
        params += (device_id,)
    assignments = ", ".join(f"{column} = ?" for column in sets)
    rows = tx.conn.execute(
        f"UPDATE commands SET {assignments} WHERE {where} RETURNING *", params
    ).fetchall()
    if not rows:
        return _not_applied(tx, command_id, target, device_id)
    row = rows[0]
    if target.is_terminal:
        tx.conn.execute(
            "UPDATE devices SET pending = pending - 1 WHERE id = ?", (row["device_id"],)
        )
    record_json = command_record_json(row)
    tx.emit("command", row["device_id"], record_json, at=stamp)
    return Transition(Verdict.APPLY, record_json)


def _not_applied(
    tx: WriteTx, command_id: str, target: CommandState, device_id: str | None
) -> Transition:
    found = command_row(tx.conn, command_id)
    if found is None:
        return Transition(None, reason="unknown command")
    if device_id is not None and found["device_id"] != device_id:
        return Transition(None, reason="command belongs to another device")
    decision = decide(CommandState(found["state"]), target)
    assert not decision.applies, "the conditional UPDATE and decide() disagree"
    return Transition(decision.verdict, command_record_json(found))


_SOURCES: dict[CommandState, tuple[tuple[str, ...], str]] = {
    target: (
        tuple(sorted(s.value for s in sources)),
        ",".join("?" * len(sources)) or "NULL",  # no source: IN (NULL) matches nothing
    )
    for target, sources in ALLOWED_SOURCES.items()
}


@dataclass(frozen=True, slots=True)
class Cancelled:
    record: Record
    notify_device: bool  # send the device a cancel notice: it may hold the command


def cancel_command(tx: WriteTx, command_id: str, now: datetime) -> Cancelled:
    """An operator's cancel, as :func:`tether.protocol.outcomes.plan_cancel` decides it."""
    row = command_row(tx.conn, command_id)
    if row is None:
        raise NotFound(f"no command {command_id!r}")
    device = device_row(tx.conn, row["device_id"], "features")
    cancelling = plan_cancel(
        CommandState(row["state"]),
        row["attempts"],
        json.loads(device["features"]) if device is not None else [],
    )
    if cancelling.mode is None:
        raise Conflict(cancelling.reason)
    error = "cancelled by an operator"
    if cancelling.mode is CancelMode.REQUESTED:
        error += "; it had been handed to the broker, so the device may still run it"
    outcome = transition(
        tx,
        command_id,
        S.CANCELLED,
        now,
        error=error,
        ended_by=EndedBy.OPERATOR,
        cancel=cancelling.mode,
    )
    assert outcome.applied and outcome.record is not None, "plan_cancel and the table disagree"
    return Cancelled(outcome.record, cancelling.notify_device)


# --- device reports -----------------------------------------------------------------------


def record_ack(
    tx: WriteTx, device_id: str, ack: AckMessage, now: datetime, policy: DeliveryPolicy
) -> Transition:
    """A device's ack: a forward move of its command, or, when the command is already final and
    the ack tells something new, its late outcome (nothing the device reports is dropped)."""
    outcome = transition(
        tx,
        ack.id,
        ack.status.state,
        now,
        device_id=device_id,
        result=ack.result,
        error=ack.error or _default_error(ack.status),
        policy=policy,
        ended_by=EndedBy.DEVICE,
    )
    if outcome.verdict is None:
        return outcome
    # The device spoke: whatever the broker replayed of its presence is confirmed now.
    tx.conn.execute("UPDATE devices SET confirmed = 1 WHERE id = ? AND confirmed = 0", (device_id,))
    if outcome.applied:
        return outcome
    row = command_row(tx.conn, ack.id)
    assert row is not None
    late = json.loads(row["late"]) if row["late"] is not None else None
    if not is_late(
        CommandState(row["state"]),
        _ended_by(row),
        row["delivered_at"] is not None,
        late is not None and late["status"] != AckStatus.RECEIVED.value,
        ack.status.state,
    ):
        return outcome
    fact: dict[str, Any] = {"status": ack.status.value, "at": ack.at}
    if ack.status is AckStatus.SUCCEEDED:
        fact["result"] = ack.result
    if ack.error is not None:
        fact["error"] = ack.error
    updated = tx.conn.execute(
        "UPDATE commands SET late = ? WHERE seq = ? RETURNING *", (_json(fact), row["seq"])
    ).fetchone()
    record_json = command_record_json(updated)
    tx.emit("command", device_id, record_json, at=format_time(now))
    return Transition(outcome.verdict, record_json, late=True)


def _ended_by(row: sqlite3.Row) -> EndedBy | None:
    if row["ended_by"] is not None:
        return EndedBy(row["ended_by"])
    # Ended before the column existed: only these three come from the device alone.
    if row["state"] in (S.SUCCEEDED.value, S.FAILED.value, S.REJECTED.value):
        return EndedBy.DEVICE
    return None


def _default_error(status: AckStatus) -> str | None:
    if status is AckStatus.REJECTED:
        return "rejected by the device"
    if status is AckStatus.EXPIRED:
        return "arrived after expires_at; not run"
    if status is AckStatus.CANCELLED:
        return "cancelled by the device before it started"
    return None


# --- delivery -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """A command to publish now, in this order (per device, acceptance order)."""

    seq: int
    id: str
    device_id: str
    name: str
    args: dict[str, Any]
    issued_at: str
    expires_at: str | None


def _device_view(row: sqlite3.Row) -> DeviceView:
    return DeviceView(online=bool(row["online"]), status_seen=bool(row["status_seen"]))


def _command_view(row: sqlite3.Row) -> CommandView:
    return CommandView(
        CommandState(row["state"]),
        row["attempts"],
        row["expires_at"],
        row["delivered_at"],
        row["due_at"],
    )


# A command row with what the plan needs of its device (no column of ``commands`` has these names).
_PLANNED = (
    "SELECT c.*, d.online, d.status_seen FROM commands c JOIN devices d ON d.id = c.device_id "
)


def _carry_out(
    tx: WriteTx, rows: list[sqlite3.Row], now: datetime, policy: DeliveryPolicy, occasion: Occasion
) -> list[Delivery]:
    """Plan each row (a ``_PLANNED`` row), in order, and do what the plan says: one UPDATE or
    one transition each. Returns what to publish, in this order."""
    out = []
    for row in rows:
        action = plan(_command_view(row), _device_view(row), now, policy, occasion)
        match action:
            case Publish(attempts=attempts, due_at=due_at):
                tx.conn.execute(
                    "UPDATE commands SET attempts = ?, last_attempt_at = ?, due_at = ? "
                    "WHERE seq = ?",
                    (attempts, format_time(now), due_at, row["seq"]),
                )
                out.append(_delivery(row))
            case Hold(until=until) | Wait(until=until):
                _look_again(tx, row, until)
            case Settle():
                _look_again(tx, row, None)
            case Expire() | GiveUp() | TimeOut():
                transition(tx, row["id"], action.state, now, error=action.error)
    return out


def _look_again(tx: WriteTx, row: sqlite3.Row, due_at: str | None) -> None:
    if due_at != row["due_at"]:
        tx.conn.execute("UPDATE commands SET due_at = ? WHERE seq = ?", (due_at, row["seq"]))


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        row["seq"],
        row["id"],
        row["device_id"],
        row["name"],
        json.loads(row["args"]),
        row["issued_at"],
        row["expires_at"],
    )


def redeliver_device(
    tx: WriteTx, device_id: str, now: datetime, policy: DeliveryPolicy
) -> list[Delivery]:
    """The device came (back) online: publish everything it has not finished, in order (the
    broker may have lost commands, and final acks, while it was away)."""
    rows = tx.conn.execute(
        _PLANNED + "WHERE c.device_id = ? AND c.state IN (?, ?, ?) ORDER BY c.seq",
        (device_id, *_UNFINISHED),
    ).fetchall()
    return _carry_out(tx, rows, now, policy, Occasion.HANDOFF)


def redeliver_online(tx: WriteTx, now: datetime, policy: DeliveryPolicy) -> list[Delivery]:
    """After the bridge reconnected: publish again every unfinished command of online devices."""
    rows = tx.conn.execute(
        _PLANNED + "WHERE d.online = 1 AND c.state IN (?, ?, ?) ORDER BY c.seq",
        _UNFINISHED,
    ).fetchall()
    return _carry_out(tx, rows, now, policy, Occasion.HANDOFF)


def resume_queued(tx: WriteTx, now: datetime, policy: DeliveryPolicy) -> list[Delivery]:
    """At bridge start: commands the broker never acknowledged are published again at once.
    (The query leaves out the commands held for a device known to be offline: the plan would
    hold them anyway.)"""
    rows = tx.conn.execute(
        _PLANNED + "WHERE c.state = ? AND (c.attempts > 0 OR d.online = 1 OR d.status_seen = 0) "
        "ORDER BY c.seq",
        (S.QUEUED.value,),
    ).fetchall()
    return _carry_out(tx, rows, now, policy, Occasion.HANDOFF)


def sweep_due(tx: WriteTx, now: datetime, policy: DeliveryPolicy) -> list[Delivery]:
    """Apply TTLs, execution timeouts and redelivery to the commands that fell due."""
    rows = tx.conn.execute(
        _PLANNED + "WHERE c.due_at IS NOT NULL AND c.due_at <= ? ORDER BY c.seq LIMIT ?",
        (format_time(now), policy.sweep_batch),
    ).fetchall()
    return _carry_out(tx, rows, now, policy, Occasion.DUE)


# --- retention ----------------------------------------------------------------------------


def prune_events(tx: WriteTx, keep: int) -> int:
    """Keep the newest ``keep`` events of the shard; record how far the log is now cut."""
    newest = int(tx.conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0])
    cut = newest - keep
    if cut <= 0:
        return 0
    removed = tx.conn.execute("DELETE FROM events WHERE seq <= ?", (cut,)).rowcount
    tx.conn.execute(
        "UPDATE meta SET value = ? "
        "WHERE key = 'events_pruned_through' AND CAST(value AS INTEGER) < ?",
        (str(cut), cut),
    )
    return int(removed)
