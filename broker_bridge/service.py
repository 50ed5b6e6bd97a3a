"""The command service over a bridge in this process (see :mod:`tether.protocol.service`).

Commands and device administration go to the :class:`Bridge`; reads go to the shards; live
events come from the store's commit listener through an :class:`EventHub`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from broker_bridge.bridge import Bridge
from broker_bridge.errors import Unavailable
from broker_bridge.hub import EventHub
from broker_bridge.latency import hop_histograms
from broker_bridge.reads import StoreReads
from broker_bridge.store import jobs
from broker_bridge.store.shard import StoreUnavailable
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


class BridgeService(StoreReads):
    def __init__(self, bridge: Bridge) -> None:
        super().__init__(bridge.store.reader)
        self.bridge = bridge
        self._hub: EventHub | None = None

    async def start(self) -> None:
        self._hub = EventHub(asyncio.get_running_loop())
        self.bridge.store.add_listener(self._hub.announce_threadsafe)
        await asyncio.to_thread(self.bridge.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self.bridge.stop)

    async def send(self, command: NewCommand) -> Accepted:
        sent = self.bridge.send(
            command.device_id,
            command.name,
            command.args,
            ttl=command.ttl,
            idempotency_key=command.idempotency_key,
            request_hash=command.request_hash,
            command_id=command.id,
        )
        try:
            accepted: jobs.Accepted = await asyncio.wrap_future(sent)
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        return Accepted(accepted.record_json, accepted.created)

    async def cancel(self, command_id: str) -> Record:
        try:
            return await asyncio.wrap_future(self.bridge.cancel(command_id))
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from exc

    async def provision(self, device_id: str) -> tuple[Record, str]:
        return await asyncio.to_thread(self.bridge.provisioner.provision, device_id)

    async def rotate(self, device_id: str) -> tuple[Record, str]:
        return await asyncio.to_thread(self.bridge.provisioner.rotate, device_id)

    async def revoke(self, device_id: str) -> Record:
        return await asyncio.to_thread(self.bridge.provisioner.revoke, device_id)

    async def figures(self) -> Figures:
        bridge = self.bridge
        return Figures(
            broker_connected=bridge.session.connected.is_set(),
            broker=bridge.broker_figures.snapshot(),
            counters=bridge.stats.snapshot(),
            latency=bridge.latency.summary(),
            hops=hop_histograms(bridge.latency),
        )

    async def health(self) -> Health:
        return Health(broker=self.bridge.session.connected.is_set(), store=await self.store_ok())

    def events(
        self, cursor: Cursor, *, live_buffer: int, page: int
    ) -> AsyncGenerator[Positioned | Reset, None]:
        assert self._hub is not None, "start() first"
        return event_stream(self.reader, self._hub, cursor, live_buffer=live_buffer, page=page)

    @property
    def live_subscribers(self) -> int:
        return self._hub.subscriber_count if self._hub else 0
