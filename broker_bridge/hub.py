"""Fan committed events out to live subscribers, each with a bounded queue.

Events reach the hub on the event loop, in commit order per shard. A subscriber that falls
``maxsize`` events behind is dropped (its ``overflowed`` flag is set and its ``get`` raises): its
stream goes back to reading the store from where its client is (:mod:`broker_bridge.stream`),
and the server's memory never grows with a burst or a slow client.
"""

from __future__ import annotations

import asyncio
from collections import deque

from tether.protocol.errors import Unavailable
from tether.protocol.service import StoredEvent


class SubscriberTooSlow(Unavailable):
    """A live subscription fell ``maxsize`` events behind; its stream re-reads the store."""


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
        self.catch_ups = 0  # streams that overflowed their live buffer and re-read the store

    def announce_threadsafe(self, events: list[StoredEvent]) -> None:
        """Called on the store's committing thread after a commit."""
        self._loop.call_soon_threadsafe(self.dispatch, events)

    def dispatch(self, events: list[StoredEvent]) -> None:
        """On the event loop."""
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
