"""Live events in a gateway: each shard's commits, from the owners over MQTT, with no gap.

Owners publish each commit's events after the commit. A gateway hears them in commit order
per shard, but can miss some: an owner killed between its commit and its publish, or this
gateway's own reconnect. The feed keeps the last sequence number it passed on per shard;
events that skip ahead, or an owner status whose head is ahead, make it read the missing
events from the shard (read-only) and pass them on first. So every committed event reaches
the hub, in order, exactly once; the streams' seam logic (:mod:`broker_bridge.stream`) relies
on that.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

from broker_bridge.hub import EventHub
from broker_bridge.store.queries import events_after
from broker_bridge.store.sharded import StoreReader
from tether.protocol.service import StoredEvent

log = logging.getLogger(__name__)

REPAIR_PAGE = 1000


@dataclass(frozen=True, slots=True)
class _Heard:
    shard: int
    events: list[StoredEvent]


@dataclass(frozen=True, slots=True)
class _Head:
    shard: int
    seq: int


class LiveFeed:
    def __init__(
        self,
        reader: StoreReader,
        hub: EventHub,
        heads: list[int],
    ) -> None:
        """``heads``: each shard's last event when the gateway started (its streams replay
        anything before from the store)."""
        self.reader = reader
        self.hub = hub
        self.last = list(heads)
        self.repairs = 0
        self.repaired_events = 0
        self._queue: asyncio.Queue[_Heard | _Head] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="live-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # from the MQTT thread, through loop.call_soon_threadsafe

    def heard(self, shard: int, events: list[StoredEvent]) -> None:
        self._queue.put_nowait(_Heard(shard, events))

    def head(self, shard: int, seq: int) -> None:
        if seq > self.last[shard]:
            self._queue.put_nowait(_Head(shard, seq))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, _Heard):
                    if item.events and item.events[0].seq > self.last[item.shard] + 1:
                        await self._repair(item.shard, item.events[0].seq - 1)
                    self._pass_on(item.shard, item.events)
                elif item.seq > self.last[item.shard]:
                    await self._repair(item.shard, item.seq)
            except Exception:
                log.exception("live feed: shard %s could not be repaired now", item.shard)

    def _pass_on(self, shard: int, events: list[StoredEvent]) -> None:
        fresh = [event for event in events if event.seq > self.last[shard]]
        if fresh:
            self.last[shard] = fresh[-1].seq
            self.hub.dispatch(fresh)

    async def _repair(self, shard: int, through: int) -> None:
        """Read what was committed but not heard, up to ``through``, and pass it on."""
        self.repairs += 1
        while self.last[shard] < through:
            page = await self.reader.aread(
                shard, partial(events_after, shard=shard, after=self.last[shard], limit=REPAIR_PAGE)
            )
            if not page.events:
                return  # not readable yet: the next event or status tries again
            self.repaired_events += len(page.events)
            self._pass_on(shard, page.events)
