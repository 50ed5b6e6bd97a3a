"""The command service: the one door between the HTTP/WebSocket side and the command side.

The gateway holds a :class:`CommandService` and nothing else from the bridge side. What goes
through the door is plain data (records as JSON-ready dicts, stored events with their JSON kept
as stored), so an implementation may run in the same process or behind a network.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.protocol.cursor import Cursor

Record = dict[str, Any]

# ``GET /api/fleet/history?range=``: the ranges offered, in seconds.
HISTORY_RANGES: dict[str, int] = {"15m": 15 * 60, "1h": 3600, "6h": 6 * 3600}


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One entry of a shard's event log: what a client replays and follows live."""

    shard: int
    seq: int
    kind: str  # "command" | "presence" | "device_event"
    device_id: str | None
    at: str
    data_json: str  # kept as stored, so it is encoded once and sent as is

    @property
    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data_json)
        return value


def command_id_of(record_json: str) -> str | None:
    """The id of a command record in JSON (:func:`command_record_json` writes it first), read
    without decoding the record; None for anything else."""
    if not record_json.startswith('{"id":"'):
        return None
    end = record_json.find('"', 7)
    return record_json[7:end] if end > 7 else None


@dataclass(frozen=True, slots=True)
class Positioned:
    """An event of a client's stream, with the cursor just after it."""

    cursor: str
    event: StoredEvent


@dataclass(frozen=True, slots=True)
class Reset:
    """The stream cannot go on from the client's cursor (the store no longer keeps it)."""

    reason: str


@dataclass(frozen=True, slots=True)
class NewCommand:
    """A command to accept. ``id``: made by the caller, so it can recognise the command's events
    before the answer comes back (and a retry of a lost answer is the same command)."""

    id: str
    device_id: str
    name: str
    args: dict[str, Any]
    ttl: float | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    record_json: str
    created: bool  # False: an earlier command with the same id, or idempotency key and body

    @property
    def record(self) -> Record:
        value: Record = json.loads(self.record_json)
        return value


@dataclass(frozen=True, slots=True)
class ShardStatus:
    shard: int
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.error is None:
            return {"shard": self.shard, "ok": True}
        return {"shard": self.shard, "ok": False, "error": self.error}


@dataclass(frozen=True, slots=True)
class DeviceList:
    devices: list[Record]
    shards: list[ShardStatus]


@dataclass(frozen=True, slots=True)
class HopHistogram:
    """Cumulative latency of one hop: ``buckets`` are (upper bound in seconds, count at or below
    it), the last bound is infinity."""

    buckets: list[tuple[float, int]]
    total_seconds: float


@dataclass(frozen=True, slots=True)
class Figures:
    """What the command side knows in memory, for ``/api/fleet`` and ``/metrics``."""

    broker_connected: bool
    broker: dict[str, Any]  # Mosquitto's $SYS figures and when they were read
    counters: dict[str, int]  # message outcomes since start
    latency: dict[str, Any]  # per-hop summaries and states per minute, for the dashboard
    hops: dict[str, HopHistogram] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Health:
    broker: bool
    store: bool


class CommandService(Protocol):
    """Everything the gateway may ask of the command side.

    Errors are :class:`tether.protocol.errors.TetherError` subclasses carrying their HTTP code.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    # commands and devices

    async def send(self, command: NewCommand) -> Accepted: ...

    async def cancel(self, command_id: str) -> Record: ...

    async def provision(self, device_id: str) -> tuple[Record, str]: ...

    async def rotate(self, device_id: str) -> tuple[Record, str]: ...

    async def revoke(self, device_id: str) -> Record: ...

    # reads

    async def devices(self, *, revoked: bool = False) -> DeviceList: ...

    async def device(self, device_id: str) -> Record | None:
        """A device's record, a revoked one too; None if it was never provisioned."""
        ...

    async def commands(
        self, device_id: str, *, state: str | None, limit: int, before: str | None
    ) -> list[Record]: ...

    async def device_events(
        self, device_id: str, kinds: tuple[str, ...], limit: int
    ) -> list[Record]: ...

    async def command(self, command_id: str) -> Record:
        """The command's record; NotFound, or Unavailable if a shard could not be read."""
        ...

    async def fleet(self) -> dict[str, Any]:
        """Counts across the fleet (``/api/fleet`` without the in-memory figures)."""
        ...

    async def history(self, range_name: str) -> dict[str, Any]: ...

    async def figures(self) -> Figures: ...

    async def health(self) -> Health: ...

    # the event stream

    def decode_cursor(self, text: str) -> Cursor:
        """A client's cursor, checked against this store (CursorError if it is not one)."""
        ...

    async def current_cursor(self) -> Cursor:
        """The position after every event stored so far: "from now on"."""
        ...

    def events(
        self, cursor: Cursor, *, live_buffer: int, page: int
    ) -> AsyncGenerator[Positioned | Reset, None]:
        """Every event after ``cursor``: replayed, then live, with no gap and no duplicate.
        A burst the live side cannot buffer is read from the store instead; it never ends the
        stream (a client that does not read is cut off by its own connection)."""
        ...

    @property
    def live_subscribers(self) -> int: ...
