"""Encode and decode the four MQTT payloads of the contract, with precise errors.

Every ``decode_*`` takes the raw bytes from the wire and either returns a typed value or raises
:class:`ProtocolError` naming the payload, the field and what is wrong with it.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from tether.protocol.errors import ProtocolError
from tether.protocol.ids import is_valid_command_id
from tether.protocol.states import CommandState
from tether.protocol.times import parse_time

MAX_ARGS_BYTES = 64 * 1024
MAX_NAME_LENGTH = 128
MAX_ERROR_LENGTH = 4096

JSONObject = dict[str, Any]


class AckStatus(enum.StrEnum):
    RECEIVED = "received"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"  # only in answer to a cancel notice, for a command not started

    @property
    def is_final(self) -> bool:
        return self is not AckStatus.RECEIVED

    @property
    def state(self) -> CommandState:
        """The command state an ack with this status moves the command to."""
        return CommandState.DELIVERED if self is AckStatus.RECEIVED else CommandState(self.value)


# One encoder for every payload: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(obj: JSONObject) -> bytes:
    return _ENCODER.encode(obj).encode()


def _reject_constant(token: str) -> None:
    raise ValueError(f"{token} is not valid JSON")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):  # 1e999 parses as infinity, which JSON cannot carry back out
        raise ValueError(f"number {token[:40]} is out of range")
    return value


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN, Infinity and numbers too large for a float."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def decode_object(raw: bytes | bytearray | str, what: str) -> JSONObject:
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(what, f"not valid UTF-8 at byte {exc.start}") from None
    else:
        text = raw
    try:
        obj = loads_strict(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(what, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(what, f"must be a JSON object, got {type(obj).__name__}")
    return obj


def _field(obj: JSONObject, what: str, name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise ProtocolError(what, "is missing", name)
    value = obj[name]
    # bool is an int in Python; never accept it where a number or string is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        expected = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise ProtocolError(what, f"must be {expected}, got {type(value).__name__}", name)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# No control characters (C0, DEL, C1), and no lone surrogates (which cannot be encoded as UTF-8).
# The OpenAPI schema states the first rule; a surrogate range is not valid in ECMA regexes.
NAME_PATTERN = f"^[^\\u0000-\\u001f\\u007f-\\u009f]{{1,{MAX_NAME_LENGTH}}}$"
_NAME_RE = re.compile(f"[^\u0000-\u001f\u007f-\u009f\ud800-\udfff]{{1,{MAX_NAME_LENGTH}}}")


def validate_command_name(value: object, what: str = "command") -> str:
    if not isinstance(value, str) or not value:
        raise ProtocolError(what, "must be a non-empty string", "name")
    if not _NAME_RE.fullmatch(value):
        raise ProtocolError(
            what, f"must be 1-{MAX_NAME_LENGTH} characters with no control characters", "name"
        )
    return value


def validate_args(value: object, what: str = "command") -> JSONObject:
    if not isinstance(value, dict):
        raise ProtocolError(what, f"must be a JSON object, got {type(value).__name__}", "args")
    try:
        size = len(encode_json(value))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(what, f"is not JSON-encodable ({exc})", "args") from None
    if size > MAX_ARGS_BYTES:
        raise ProtocolError(what, f"is {size} bytes encoded; the limit is {MAX_ARGS_BYTES}", "args")
    return value


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """``P/{device}/cmd``: what the bridge publishes to a device."""

    id: str
    name: str
    issued_at: str
    args: JSONObject = field(default_factory=dict)
    expires_at: str | None = None

    def encode(self) -> bytes:
        return encode_json(
            {
                "id": self.id,
                "name": self.name,
                "args": self.args,
                "issued_at": self.issued_at,
                "expires_at": self.expires_at,
            }
        )


def decode_command(raw: bytes | bytearray | str) -> CommandMessage:
    what = "command"
    obj = decode_object(raw, what)
    command_id = _field(obj, what, "id", str)
    if not is_valid_command_id(command_id):
        raise ProtocolError(what, f"{command_id[:60]!r} is not a command id (UUIDv7)", "id")
    name = validate_command_name(obj.get("name"), what)
    args = validate_args(obj.get("args", {}), what)
    issued_at = _field(obj, what, "issued_at", str)
    parse_time(issued_at, what, "issued_at")
    expires_at = obj.get("expires_at")
    if expires_at is not None:
        parse_time(expires_at, what, "expires_at")
    return CommandMessage(command_id, name, issued_at, args, expires_at)


@dataclass(frozen=True, slots=True)
class CancelNotice:
    """``P/{device}/cmd`` ``{"id", "cancel": true, "at"}``: an operator cancelled a command the
    device may hold. Sent only to devices whose ``status`` lists the ``cancel`` feature; such a
    device answers ``cancelled`` if it has not started the command, and runs nothing."""

    id: str
    at: str

    def encode(self) -> bytes:
        return encode_json({"id": self.id, "cancel": True, "at": self.at})


def decode_cancel_notice(raw: bytes | bytearray | str) -> CancelNotice | None:
    """The notice, or None when the payload is not one (then it is meant as a command)."""
    try:
        obj = decode_object(raw, "cancel notice")
    except ProtocolError:
        return None
    if obj.get("cancel") is not True:
        return None
    command_id = obj.get("id")
    at = obj.get("at")
    if not isinstance(command_id, str) or not is_valid_command_id(command_id):
        return None
    return CancelNotice(command_id, at) if isinstance(at, str) else None


@dataclass(frozen=True, slots=True)
class AckMessage:
    """``P/{device}/ack``: a device's report on one command."""

    id: str
    status: AckStatus
    at: str
    result: Any = None
    error: str | None = None

    def encode(self) -> bytes:
        obj: JSONObject = {"id": self.id, "status": self.status.value, "at": self.at}
        if self.status is AckStatus.SUCCEEDED:
            obj["result"] = self.result
        if self.error is not None:
            obj["error"] = self.error
        return encode_json(obj)


def decode_ack(raw: bytes | bytearray | str) -> AckMessage:
    what = "ack"
    obj = decode_object(raw, what)
    command_id = _field(obj, what, "id", str)
    if not is_valid_command_id(command_id):
        raise ProtocolError(what, f"{command_id[:60]!r} is not a command id (UUIDv7)", "id")
    status_text = _field(obj, what, "status", str)
    try:
        status = AckStatus(status_text)
    except ValueError:
        allowed = ", ".join(s.value for s in AckStatus)
        raise ProtocolError(
            what, f"{status_text[:40]!r} is not one of {allowed}", "status"
        ) from None
    at = _field(obj, what, "at", str)
    parse_time(at, what, "at")
    error = obj.get("error")
    if error is not None and not isinstance(error, str):
        raise ProtocolError(what, f"must be a string, got {type(error).__name__}", "error")
    if status is AckStatus.FAILED and not error:
        raise ProtocolError(what, "is required when status is 'failed'", "error")
    if error is not None:
        error = error[:MAX_ERROR_LENGTH]
    return AckMessage(command_id, status, at, obj.get("result"), error)


@dataclass(frozen=True, slots=True)
class DeviceEventMessage:
    """``P/{device}/evt``: something a device wants people to know."""

    name: str
    at: str
    data: Any = None

    def encode(self) -> bytes:
        return encode_json({"name": self.name, "data": self.data, "at": self.at})


def decode_event(raw: bytes | bytearray | str) -> DeviceEventMessage:
    what = "event"
    obj = decode_object(raw, what)
    name = validate_command_name(obj.get("name"), what)
    at = _field(obj, what, "at", str)
    parse_time(at, what, "at")
    return DeviceEventMessage(name, at, obj.get("data"))


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """``P/{device}/status`` (retained). The Last Will is ``{"online": false}`` with no time."""

    online: bool
    at: str | None = None
    agent: str | None = None
    features: tuple[str, ...] = ()  # e.g. ("cancel",): what the device supports beyond the base

    def encode(self) -> bytes:
        obj: JSONObject = {"online": self.online}
        if self.at is not None:
            obj["at"] = self.at
        if self.agent is not None:
            obj["agent"] = self.agent
        if self.features:
            obj["features"] = list(self.features)
        return encode_json(obj)


def decode_status(raw: bytes | bytearray | str) -> StatusMessage:
    what = "status"
    obj = decode_object(raw, what)
    online = _field(obj, what, "online", bool)
    at = obj.get("at")
    if at is not None:
        parse_time(at, what, "at")
    agent = obj.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise ProtocolError(what, f"must be a string, got {type(agent).__name__}", "agent")
    features = obj.get("features", [])
    if not isinstance(features, list) or not all(
        isinstance(f, str) and 0 < len(f) <= 64 for f in features
    ):
        raise ProtocolError(what, "must be a list of short strings", "features")
    return StatusMessage(online, at, agent, tuple(features[:32]))
