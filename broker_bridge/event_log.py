"""Catch-up reads of the event log across shards, by cursor: no gap, no duplicate."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from broker_bridge.store.queries import EventPage, events_after
from broker_bridge.store.sharded import StoreReader
from tether.protocol.cursor import Cursor, MovingCursor
from tether.protocol.service import StoredEvent


@dataclass(frozen=True, slots=True)
class PositionedEvent:
    event: StoredEvent
    cursor: str  # the position just after this event, encoded: resume from here


@dataclass(frozen=True, slots=True)
class Replay:
    events: list[PositionedEvent]
    cursor: Cursor  # after the last returned event (the input cursor if none)
    reset: bool = False  # the cursor is older than what the store keeps
    more: bool = False  # a shard had more than the page: read again from ``cursor``


def _order(event: StoredEvent) -> tuple[str, int, int]:
    return (event.at, event.shard, event.seq)


def merge(cursor: Cursor, pages: list[EventPage], limit: int) -> Replay:
    """Interleave shard pages by time while keeping each shard's own order (pure).

    A page that stops short of its shard's end may not run past the point where that shard's
    unread events begin: the merge stops at the earliest such point (the horizon), so pages
    read in turn come out in one time order, as if every shard had been read whole."""
    streams: list[Iterable[StoredEvent]] = [page.events for page in pages]
    horizon = min(
        (_order(page.events[-1]) for page in pages if page.events[-1:] and _cut_short(page)),
        default=None,
    )
    out: list[PositionedEvent] = []
    moving = MovingCursor(cursor)  # one shard's part re-encoded per event, not all of them
    for event in heapq.merge(*streams, key=_order):
        if len(out) >= limit or (horizon is not None and _order(event) > horizon):
            break  # stop, not skip: what each shard gives stays a prefix of its page
        out.append(PositionedEvent(event, moving.advance(event.shard, event.seq)))
    position = moving.cursor
    more = any(
        (page.events and page.events[-1].seq > position.positions[i])
        or page.last_seq > position.positions[i]
        for i, page in enumerate(pages)
    )
    return Replay(out, position, more=more)


def _cut_short(page: EventPage) -> bool:
    return bool(page.events) and page.events[-1].seq < page.last_seq


def is_too_old(cursor: Cursor, pages: list[EventPage]) -> bool:
    """Some shard already pruned events the cursor has not seen."""
    return any(cursor.positions[i] < page.pruned_through for i, page in enumerate(pages))


async def read_after(store: StoreReader, cursor: Cursor, limit: int = 1000) -> Replay:
    # Twice a fair share from each shard, not ``limit`` from each: reading 8 x 1,000 rows to
    # send 1,000 was most of a replay's cost. A shard that holds more than its share is read
    # on in the next page (see ``merge``'s horizon).
    per_shard = max(1, 2 * -(-limit // store.shard_count))
    pages = await asyncio.gather(
        *(
            store.aread(
                i, partial(events_after, shard=i, after=cursor.positions[i], limit=per_shard)
            )
            for i in range(store.shard_count)
        )
    )
    if is_too_old(cursor, pages):
        return Replay([], cursor, reset=True)
    return merge(cursor, pages, limit)


async def current_cursor(store: StoreReader) -> Cursor:
    """The position after every event stored so far: "from now on"."""
    pages = await asyncio.gather(
        *(
            store.aread(i, partial(events_after, shard=i, after=2**62, limit=1))
            for i in range(store.shard_count)
        )
    )
    return Cursor(tuple(page.last_seq for page in pages))
