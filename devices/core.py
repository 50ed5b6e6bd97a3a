"""What a device does with each command, decided without any IO.

Given the raw payload, what the journal holds for its id, the handler registry and the time,
:func:`plan_command` says which one of five things happens: ignore it, re-send a stored final
ack, wait for a run already in progress, answer a final ack without running (``rejected`` or
``expired``), or run it. :func:`plan_recovery` says what happens after a crash to a command that
was ``received`` but never finished. The IO shells (the threaded agent, the asyncio simulator)
carry the plans out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devices.errors import BadArgs
from devices.handlers import CommandSpec
from devices.journal import Entry
from tether.protocol import (
    AckMessage,
    AckStatus,
    CancelNotice,
    CommandMessage,
    ProtocolError,
    decode_command,
    format_time,
    is_valid_command_id,
    parse_time,
)
from tether.protocol.payloads import MAX_ERROR_LENGTH, decode_object, encode_json

MAX_RESULT_BYTES = 64 * 1024  # an ack must stay far below the broker's 128 KiB packet cap
INTERRUPTED = "interrupted"

Lookup = Callable[[str], CommandSpec | None]


class Step(enum.StrEnum):
    IGNORE = "ignore"  # unreadable or no usable id: log it, answer nothing
    RESEND = "resend"  # already finished: send the stored final ack again, run nothing
    PENDING = "pending"  # a copy is already running: its final ack will answer this one too
    FINISH = "finish"  # answer with a final ack without running (rejected, expired, interrupted)
    RUN = "run"  # record it, say received, run the handler


@dataclass(frozen=True, slots=True)
class Incoming:
    """A ``cmd`` payload as far as it could be read."""

    command: CommandMessage | None
    command_id: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    step: Step
    command_id: str | None = None
    command: CommandMessage | None = None
    spec: CommandSpec | None = None
    ack: AckMessage | None = None
    reason: str = ""


def read_command(raw: bytes | bytearray) -> Incoming:
    """Decode a ``cmd`` payload; on failure, still recover the command id when there is one."""
    try:
        command = decode_command(raw)
    except ProtocolError as exc:
        return Incoming(None, _readable_id(raw), str(exc))
    return Incoming(command, command.id)


def _readable_id(raw: bytes | bytearray) -> str | None:
    try:
        obj = decode_object(raw, "command")
    except ProtocolError:
        return None
    command_id = obj.get("id")
    return command_id if is_valid_command_id(command_id) else None


def plan_command(incoming: Incoming, stored: Entry | None, lookup: Lookup, now: datetime) -> Plan:
    command_id = incoming.command_id
    if command_id is None:
        return Plan(Step.IGNORE, reason=incoming.error or "no command id")
    if stored is not None:
        if stored.final is not None:
            return Plan(Step.RESEND, command_id, ack=stored.final)
        return Plan(Step.PENDING, command_id, reason="already received and not finished")
    command = incoming.command
    if command is None:
        return _finish(command_id, AckStatus.REJECTED, now, incoming.error or "malformed")
    if command.expires_at is not None:
        expires_at = parse_time(command.expires_at)
        if now >= expires_at:
            error = f"arrived at {format_time(now)}, after expires_at {command.expires_at}"
            return _finish(command_id, AckStatus.EXPIRED, now, error, command)
    spec = lookup(command.name)
    if spec is None:
        error = f"unknown command {command.name!r}"
        return _finish(command_id, AckStatus.REJECTED, now, error, command)
    if spec.validate is not None:
        try:
            spec.validate(command.args)
        except Exception as exc:
            error = f"bad args: {exc_text(exc)}"
            return _finish(command_id, AckStatus.REJECTED, now, error, command)
    return Plan(Step.RUN, command_id, command, spec)


def plan_cancel_notice(notice: CancelNotice, stored: Entry | None, now: datetime) -> Plan:
    """An operator cancelled a command this device may hold. Not seen yet (or still waiting
    behind a running one, unrecorded): record it as ``cancelled``, so it never runs when it
    comes. Already finished: say again how it ended. Started: too late, its own ack follows."""
    if stored is None:
        return _finish(notice.id, AckStatus.CANCELLED, now, "cancelled before it started")
    if stored.final is not None:
        return Plan(Step.RESEND, notice.id, ack=stored.final)
    return Plan(Step.PENDING, notice.id, reason="cancel notice for a command already running")


def plan_recovery(entry: Entry, lookup: Lookup, now: datetime) -> Plan:
    """A command recorded as received but never finished: the agent died while it ran."""
    spec = lookup(entry.name)
    if spec is not None and spec.idempotent and entry.command is not None:
        return Plan(Step.RUN, entry.command_id, entry.command, spec, reason="rerun after a crash")
    return _finish(entry.command_id, AckStatus.FAILED, now, INTERRUPTED, entry.command)


def _finish(
    command_id: str,
    status: AckStatus,
    now: datetime,
    error: str,
    command: CommandMessage | None = None,
) -> Plan:
    ack = AckMessage(command_id, status, format_time(now), error=error[:MAX_ERROR_LENGTH])
    return Plan(Step.FINISH, command_id, command, ack=ack, reason=error)


def received_ack(command_id: str, now: datetime) -> AckMessage:
    return AckMessage(command_id, AckStatus.RECEIVED, format_time(now))


def outcome_ack(
    command_id: str, now: datetime, *, result: Any = None, error: BaseException | None = None
) -> AckMessage:
    """The final ack for a handler that returned ``result`` or raised ``error``."""
    at = format_time(now)
    if error is not None:
        status = AckStatus.REJECTED if isinstance(error, BadArgs) else AckStatus.FAILED
        return AckMessage(command_id, status, at, error=exc_text(error))
    try:
        size = len(encode_json({"result": result}))
    except (TypeError, ValueError) as exc:
        return AckMessage(
            command_id, AckStatus.FAILED, at, error=f"result is not JSON-encodable: {exc}"
        )
    if size > MAX_RESULT_BYTES:
        error_text = f"result is {size} bytes encoded; the limit is {MAX_RESULT_BYTES}"
        return AckMessage(command_id, AckStatus.FAILED, at, error=error_text)
    return AckMessage(command_id, AckStatus.SUCCEEDED, at, result=result)


def exc_text(exc: BaseException) -> str:
    """An exception as an ack's ``error``: its message, or its type when it has none."""
    text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR_LENGTH]
