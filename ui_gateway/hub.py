"""Fan committed events out to live subscribers, each with a bounded queue.

The store announces events from the thread that committed them; the hub hops them onto the
event loop in that order. A subscriber that falls ``maxsize`` events behind is cut off (its
``overflowed`` flag is set and its ``get`` raises): it resumes later from its cursor, and the
server's memory never grows with a slow client.
"""

from __future__ import annotations

import asyncio
from collections import deque

from broker_bridge.store.shard import StoredEvent
from ui_gateway.errors import TooSlow


class SubscriberTooSlow(TooSlow):
    pass


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[StoredEvent] = deque()
        self._ready = asyncio.Event()
        self.overflowed = False

    def offer(self, event: StoredEvent) -> None:
        if self.overflowed:
            return
        if len(self._items) >= self.maxsize:
            self.overflowed = True
            self._items.clear()
        else:
            self._items.append(event)
        self._ready.set()

    async def get(self) -> StoredEvent:
        while True:
            if self.overflowed:
                raise SubscriberTooSlow(f"more than {self.maxsize} events behind")
            if self._items:
                return self._items.popleft()
            self._ready.clear()
            await self._ready.wait()


class EventHub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: set[Subscription] = set()
        self.delivered = 0

    def announce_threadsafe(self, events: list[StoredEvent]) -> None:
        """Called on the store's committing thread after a commit."""
        self._loop.call_soon_threadsafe(self._dispatch, events)

    def _dispatch(self, events: list[StoredEvent]) -> None:
        for subscription in tuple(self._subscribers):
            for event in events:
                subscription.offer(event)
        self.delivered += len(events)

    def subscribe(self, maxsize: int) -> Subscription:
        subscription = Subscription(maxsize)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
