"""Catch-up reads of the event log across shards, by cursor: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from broker_bridge.cursor import Cursor
from broker_bridge.store.queries import EventPage, events_after
from broker_bridge.store.shard import StoredEvent
from broker_bridge.store.sharded import ShardedStore


@dataclass(frozen=True, slots=True)
class PositionedEvent:
    event: StoredEvent
    cursor: Cursor  # the position just after this event: resume from here


@dataclass(frozen=True, slots=True)
class Replay:
    events: list[PositionedEvent]
    cursor: Cursor  # after the last returned event (the input cursor if none)
    reset: bool = False  # the cursor is older than what the store keeps
    more: bool = False  # a shard had more than the page: read again from ``cursor``


def merge(cursor: Cursor, pages: list[EventPage], limit: int) -> Replay:
    """Interleave shard pages by time while keeping each shard's own order (pure)."""
    streams: list[Iterable[StoredEvent]] = [page.events for page in pages]
    merged = heapq.merge(*streams, key=lambda e: (e.at, e.shard, e.seq))
    out: list[PositionedEvent] = []
    position = cursor
    for event in merged:
        if len(out) >= limit:
            break
        position = position.advanced(event.shard, event.seq)
        out.append(PositionedEvent(event, position))
    more = any(
        (page.events and page.events[-1].seq > position.positions[i])
        or page.last_seq > position.positions[i]
        for i, page in enumerate(pages)
    )
    return Replay(out, position, more=more)


def is_too_old(cursor: Cursor, pages: list[EventPage]) -> bool:
    """Some shard already pruned events the cursor has not seen."""
    return any(cursor.positions[i] < page.pruned_through for i, page in enumerate(pages))


async def read_after(store: ShardedStore, cursor: Cursor, limit: int = 1000) -> Replay:
    pages = await asyncio.gather(
        *(
            store.aread(i, partial(events_after, shard=i, after=cursor.positions[i], limit=limit))
            for i in range(store.shard_count)
        )
    )
    if is_too_old(cursor, pages):
        return Replay([], cursor, reset=True)
    return merge(cursor, pages, limit)


async def current_cursor(store: ShardedStore) -> Cursor:
    """The position after every event stored so far: "from now on"."""
    pages = await asyncio.gather(
        *(
            store.aread(i, partial(events_after, shard=i, after=2**62, limit=1))
            for i in range(store.shard_count)
        )
    )
    return Cursor(tuple(page.last_seq for page in pages))
