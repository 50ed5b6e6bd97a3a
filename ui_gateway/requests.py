"""Reading and checking what clients send: bodies with a size cap, commands, query values."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from tether.protocol import MAX_ARGS_BYTES, ProtocolError
from tether.protocol.payloads import encode_json, loads_strict, validate_args, validate_command_name
from tether.protocol.service import NewCommand
from ui_gateway.errors import BadRequest, TooLarge

MAX_IDEMPOTENCY_KEY = 200
IDEMPOTENCY_KEY_PATTERN = f"^[\\x20-\\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}$"
IDEMPOTENCY_KEY_RE = re.compile(f"[\x20-\x7e]{{1,{MAX_IDEMPOTENCY_KEY}}}")


async def read_json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise BadRequest("the body must be a JSON object")
    try:
        return loads_strict(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


@dataclass(frozen=True, slots=True)
class SendRequest:
    name: str
    args: dict[str, Any]
    ttl: float | None
    idempotency_key: str | None

    def command(self, command_id: str, device_id: str) -> NewCommand:
        return NewCommand(
            command_id,
            device_id,
            self.name,
            self.args,
            self.ttl,
            self.idempotency_key,
            self.request_hash,
        )

    @property
    def request_hash(self) -> str:
        canonical = json.dumps(
            {"name": self.name, "args": self.args, "ttl": self.ttl},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def parse_send(body: Any, idempotency_key: str | None) -> SendRequest:
    """Check a send request; raise 400/422-style errors that name the field."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = set(body) - {"name", "args", "ttl", "idempotency_key", "device", "type", "ref"}
    if unknown:
        raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}", status=422)
    try:
        name = validate_command_name(body.get("name"), "send")
        args = body.get("args", {})
        if isinstance(args, dict) and len(encode_json(args)) > MAX_ARGS_BYTES:
            raise TooLarge(f"args are over {MAX_ARGS_BYTES} bytes encoded")
        args = validate_args(args, "send")
    except ProtocolError as exc:
        raise BadRequest(str(exc), status=422) from None
    ttl = body.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool)
        or not isinstance(ttl, int | float)
        or not math.isfinite(ttl)
        or ttl <= 0
        or ttl > 366 * 24 * 3600
    ):
        raise BadRequest("ttl must be a positive number of seconds (≤ 1 year)", status=422)
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY_RE.fullmatch(idempotency_key)
    ):
        raise BadRequest(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters or spaces"
        )
    return SendRequest(name, args, float(ttl) if ttl is not None else None, idempotency_key)


def query_bool(request: Request, name: str, default: bool) -> bool:
    text = request.query_params.get(name)
    if text is None:
        return default
    if text not in ("true", "false"):
        raise BadRequest(f"?{name} must be true or false")
    return text == "true"


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"?{name} must be a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"?{name} must be between {low} and {high}")
    return value
