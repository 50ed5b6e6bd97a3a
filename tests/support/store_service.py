"""A command service over a real store and no broker, for the gateway's own tests.

It does what a shard owner does in the store (accept, cancel, add and revoke devices) and
publishes nothing: commands stay ``queued`` as for a device that is not connected. With it,
Starlette's TestClient exercises the whole HTTP/WS surface without a Mosquitto.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path

from broker_bridge.errors import NotFound, Unavailable
from broker_bridge.hub import EventHub
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.reads import StoreReads
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from broker_bridge.stream import event_stream
from tether.protocol.cursor import Cursor
from tether.protocol.service import (
    Accepted,
    Figures,
    Health,
    NewCommand,
    Positioned,
    Record,
    Reset,
)


def _now() -> datetime:
    return datetime.now(UTC)


class StoreOnlyService(StoreReads):
    def __init__(self, data_dir: Path, shards: int = 4) -> None:
        self.store = ShardedStore(data_dir, shards)
        super().__init__(self.store.reader)
        self.policy = DeliveryPolicy()
        self._hub: EventHub | None = None

    async def start(self) -> None:
        self._hub = EventHub(asyncio.get_running_loop())
        self.store.add_listener(self._hub.announce_threadsafe)

    async def stop(self) -> None:
        self.store.close()

    async def send(self, command: NewCommand) -> Accepted:
        accepted = await self.store.awrite(
            command.device_id, lambda tx: jobs.accept_command(tx, command, _now(), self.policy)
        )
        return Accepted(accepted.record_json, accepted.created)

    async def cancel(self, command_id: str) -> Record:
        for shard in range(self.store.shard_count):
            try:
                cancelled = await self.store.awrite_shard(
                    shard, lambda tx: jobs.cancel_command(tx, command_id, _now())
                )
            except NotFound:
                continue
            return cancelled.record
        raise NotFound(f"no command {command_id!r}")

    async def provision(self, device_id: str) -> tuple[Record, str]:
        """The device is known offline (with no broker, it cannot be connected), so its
        commands are held, as for any offline device, and never counted as published."""

        def create(tx: jobs.WriteTx) -> Record:
            record = jobs.create_device(tx, device_id, device_id, _now())
            jobs.update_presence(tx, device_id, False, None, _now())
            return record

        return await self.store.awrite(device_id, create), "no-broker-no-password"

    async def rotate(self, device_id: str) -> tuple[Record, str]:
        raise Unavailable("no broker: passwords live in the broker")

    async def revoke(self, device_id: str) -> Record:
        return await self.store.awrite(
            device_id, lambda tx: jobs.revoke_device(tx, device_id, _now())
        )

    async def figures(self) -> Figures:
        return Figures(
            broker_connected=False, broker={"figures": {}}, counters={}, latency={}, hops={}
        )

    async def health(self) -> Health:
        return Health(broker=False, store=await self.store_ok())

    def events(
        self, cursor: Cursor, *, live_buffer: int, page: int
    ) -> AsyncGenerator[Positioned | Reset, None]:
        assert self._hub is not None
        return event_stream(self.reader, self._hub, cursor, live_buffer=live_buffer, page=page)

    @property
    def live_subscribers(self) -> int:
        return self._hub.subscriber_count if self._hub else 0
