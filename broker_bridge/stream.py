"""One client's event stream: replay after its cursor, then live, with no gap and no duplicate.

1. Replay from the store until caught up (no live buffering yet, however far behind it is).
2. Subscribe to the hub, then replay once more: this covers what committed in between.
3. Go live, skipping any live event the cursor already covers. A shard commits, then
   announces, in order, so any event missing from the second replay is still to be announced.
4. If a burst overflows the live buffer (the workers commit faster than this gateway passes
   events on: there is no backpressure between processes), drop the buffer and go back to 1
   from what the client was sent. A client is cut off only when it does not read what it is
   sent (its connection's outbox fills), not because the server side had a burst.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from broker_bridge.event_log import read_after
from broker_bridge.hub import EventHub, SubscriberTooSlow, Subscription
from broker_bridge.store.sharded import StoreReader
from tether.protocol.cursor import Cursor, MovingCursor
from tether.protocol.service import Positioned, Reset


async def event_stream(
    store: StoreReader, hub: EventHub, cursor: Cursor, *, live_buffer: int, page: int = 1000
) -> AsyncGenerator[Positioned | Reset, None]:
    position = cursor
    while True:
        subscription: Subscription | None = None
        try:
            for phase in ("catch-up", "seam"):
                if phase == "seam":
                    subscription = hub.subscribe(live_buffer)
                while True:
                    replay = await read_after(store, position, page)
                    if replay.reset:
                        yield Reset("the cursor is older than the events the store keeps")
                        return
                    for item in replay.events:
                        yield Positioned(item.cursor, item.event)
                    position = replay.cursor
                    if not replay.more:
                        break
            assert subscription is not None
            live = MovingCursor(position)
            while True:
                try:
                    event = await subscription.get()
                except SubscriberTooSlow:
                    position = live.cursor  # what the client has: catch up from the store
                    hub.catch_ups += 1
                    break
                if live.covers(event.shard, event.seq):
                    continue
                yield Positioned(live.advance(event.shard, event.seq), event)
        finally:
            if subscription is not None:
                hub.unsubscribe(subscription)
