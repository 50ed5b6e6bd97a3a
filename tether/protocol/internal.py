"""Tether's internal topics, between gateways and the shard-owning bridge workers (pure).

Under ``P/_bridge/`` (no device id can start with ``_``), and usable only by the service
login (see ``mosquitto/``):

- ``req/<group>``: a gateway's request (send, cancel, provision, rotate, revoke) to whichever
  worker owns the shard group; an MQTT 5 request, answered on its Response Topic with its
  Correlation Data. The group's persistent session keeps requests while no worker owns it.
- ``resp/<gateway>``: the answers to one gateway.
- ``events/<shard>``: each commit's events of one shard, in commit order, for gateways to push
  live. Lines of ``seq TAB kind TAB device TAB at TAB data-json``; the data JSON is the stored
  text, passed on without decoding.
- ``owners/<group>``: the retained status of a group's owner (worker, shards, heads, figures);
  emptied by its Last Will when the owner dies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from tether.protocol.errors import ProtocolError
from tether.protocol.ids import COMMAND_ID_MAX_LENGTH, is_valid_command_id, validate_device_id
from tether.protocol.service import NewCommand, StoredEvent

INTERNAL = "_bridge"
OPS = ("send", "cancel", "provision", "rotate", "revoke")
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class InternalTopics:
    prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{INTERNAL}"

    def request(self, group: int) -> str:
        return f"{self.base}/req/{group}"

    def response(self, client_id: str) -> str:
        return f"{self.base}/resp/{client_id}"

    def events(self, shard: int) -> str:
        return f"{self.base}/events/{shard}"

    @property
    def all_events(self) -> str:
        return f"{self.base}/events/+"

    def owner(self, group: int) -> str:
        return f"{self.base}/owners/{group}"

    @property
    def all_owners(self) -> str:
        return f"{self.base}/owners/+"

    def sync(self, client_id: str) -> str:
        return f"{self.base}/sync/{client_id}"

    def number_in(self, topic: str, kind: str) -> int:
        """The group or shard number at the end of ``P/_bridge/<kind>/<n>``."""
        head = f"{self.base}/{kind}/"
        tail = topic[len(head) :] if topic.startswith(head) else ""
        if not tail.isdigit() or len(tail) > 6:
            raise ProtocolError("topic", f"{topic[:200]!r} is not {head}<number>")
        return int(tail)


# requests


@dataclass(frozen=True, slots=True)
class Request:
    op: str
    device_id: str
    deadline: float  # epoch seconds: past it, the owner refuses (the gateway gave up)
    command: NewCommand | None = None  # op "send"
    command_id: str | None = None  # op "cancel"

    def encode(self) -> bytes:
        body: dict[str, Any] = {"op": self.op, "device": self.device_id, "deadline": self.deadline}
        if self.command is not None:
            c = self.command
            body["command"] = {
                "id": c.id,
                "name": c.name,
                "args": c.args,
                "ttl": c.ttl,
                "idempotency_key": c.idempotency_key,
                "request_hash": c.request_hash,
            }
        if self.command_id is not None:
            body["command_id"] = self.command_id
        return json.dumps(body, separators=(",", ":")).encode()


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``body[name]`` if it has the type ``kind`` (a bool is not a number here)."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ProtocolError("request", f"{name!r} is missing or has the wrong type")
    return value


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    return None if body.get(name) is None else _field(body, name, kind)


def decode_request(payload: bytes) -> Request:
    """A request from a gateway, checked field by field; ProtocolError for anything else."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise ProtocolError("request", "too large")
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("request", "not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolError("request", "not a JSON object")
    op = body.get("op")
    if op not in OPS:
        raise ProtocolError("request", f"unknown op {str(op)[:40]!r}")
    device_id = validate_device_id(body.get("device"))
    deadline = float(_field(body, "deadline", (int, float)))
    if not math.isfinite(deadline):
        raise ProtocolError("request", "deadline is not a number")
    if op == "send":
        raw = _field(body, "command", dict)
        command_id = _field(raw, "id", str)
        if not is_valid_command_id(command_id):
            raise ProtocolError("request", "the command id is not a Tether command id")
        ttl = _optional(raw, "ttl", (int, float))
        command = NewCommand(
            command_id,
            device_id,
            _field(raw, "name", str),
            _field(raw, "args", dict),
            None if ttl is None else float(ttl),
            _optional(raw, "idempotency_key", str),
            _optional(raw, "request_hash", str),
        )
        return Request(op, device_id, deadline, command=command)
    if op == "cancel":
        command_id = _field(body, "command_id", str)
        if len(command_id) > COMMAND_ID_MAX_LENGTH:
            raise ProtocolError("request", "command_id is too long")
        return Request(op, device_id, deadline, command_id=command_id)
    return Request(op, device_id, deadline)


# answers: one JSON header line, then the record's JSON as stored (not decoded on the way)


@dataclass(frozen=True, slots=True)
class Answer:
    ok: bool
    record_json: str = "null"
    created: bool = False
    password: str | None = None
    code: str = ""
    status: int = 200
    message: str = ""

    def encode(self) -> bytes:
        head: dict[str, Any] = {"ok": self.ok}
        if self.ok:
            head["created"] = self.created
            if self.password is not None:
                head["password"] = self.password
        else:
            head.update(code=self.code, status=self.status, message=self.message)
        return (json.dumps(head, separators=(",", ":")) + "\n" + self.record_json).encode()


def decode_answer(payload: bytes) -> Answer:
    text = payload.decode()
    head_text, _, record_json = text.partition("\n")
    head = json.loads(head_text)
    if not isinstance(head, dict) or not isinstance(head.get("ok"), bool):
        raise ProtocolError("answer", "not a Tether answer")
    if head["ok"]:
        return Answer(True, record_json or "null", bool(head.get("created")), head.get("password"))
    return Answer(
        False,
        code=str(head.get("code", "internal")),
        status=int(head.get("status", 500)),
        message=str(head.get("message", "")),
    )


# events


EVENTS_MAX_BYTES = 64 * 1024  # per message: well under the broker's 128 KiB packet limit


def encode_events(events: list[StoredEvent], limit: int = EVENTS_MAX_BYTES) -> list[bytes]:
    """One commit's events of one shard as few messages as fit under ``limit`` bytes each,
    in order (an event larger than ``limit`` goes alone)."""
    messages: list[bytes] = []
    lines: list[bytes] = []
    size = 0
    for e in events:
        line = f"{e.seq}\t{e.kind}\t{e.device_id or ''}\t{e.at}\t{e.data_json}".encode()
        if lines and size + len(line) + 1 > limit:
            messages.append(b"\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        messages.append(b"\n".join(lines))
    return messages


def decode_events(shard: int, payload: bytes) -> list[StoredEvent]:
    events = []
    for line in payload.decode().split("\n"):
        seq, kind, device_id, at, data_json = line.split("\t", 4)
        events.append(StoredEvent(shard, int(seq), kind, device_id or None, at, data_json))
    return events
