"""Cursors over the sharded event log: resuming yields exactly the later events, across shards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker_bridge.event_log import current_cursor, read_after
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from tether.protocol.cursor import Cursor, CursorError, MovingCursor


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=16))
def test_cursor_round_trip(positions: list[int]) -> None:
    cursor = Cursor(tuple(positions))
    assert Cursor.decode(cursor.encode(), len(positions)) == cursor


@given(
    st.lists(st.integers(0, 10**9), min_size=1, max_size=8),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 10**9)), max_size=30),
)
def test_a_moving_cursor_encodes_as_the_cursor_it_stands_for(
    start: list[int], moves: list[tuple[int, int]]
) -> None:
    expected = Cursor(tuple(start))
    moving = MovingCursor(expected)
    for shard, seq in moves:
        shard %= len(start)
        assert moving.covers(shard, seq) == (seq <= expected.positions[shard])
        expected = expected.advanced(shard, seq)
        assert moving.advance(shard, seq) == expected.encode()
    assert moving.cursor == expected


@pytest.mark.parametrize(
    "text", ["", "c1.", "c1.1-2", "c1.1--2", "x1.1-2-3", "c1.1-2-Z", "c1. 1-2-3", 5]
)
def test_bad_cursors_are_refused(text: object) -> None:
    with pytest.raises(CursorError):
        Cursor.decode(text, 3)  # type: ignore[arg-type]


def write_events(store: ShardedStore, devices: list[str]) -> list[tuple[int, int]]:
    futures = [
        store.write(d, lambda tx, d=d, i=i: tx.emit("device_event", d, {"i": i}))
        for i, d in enumerate(devices)
    ]
    return [(e.shard, e.seq) for e in (f.result() for f in futures)]


@settings(max_examples=25, deadline=None)
@given(
    devices=st.lists(st.sampled_from([f"d{i}" for i in range(12)]), min_size=0, max_size=120),
    page=st.integers(1, 40),
    split=st.integers(0, 120),
)
def test_paging_from_any_cursor_gives_every_event_once(
    tmp_path_factory: pytest.TempPathFactory, devices: list[str], page: int, split: int
) -> None:
    store = ShardedStore(tmp_path_factory.mktemp("log"), 4)
    try:
        written = write_events(store, devices[:split])

        async def drain(cursor: Cursor) -> tuple[list[tuple[int, int]], Cursor]:
            seen = []
            order = []
            while True:
                replay = await read_after(store, cursor, page)
                assert not replay.reset
                seen += [(p.event.shard, p.event.seq) for p in replay.events]
                order += [(p.event.at, p.event.shard, p.event.seq) for p in replay.events]
                cursor = replay.cursor
                if not replay.more:
                    # Pages come out in one time order across shards, as one whole read would.
                    assert order == sorted(order)
                    return seen, cursor

        first, cursor = asyncio.run(drain(Cursor.start(4)))
        assert sorted(first) == sorted(written) and len(set(first)) == len(first)
        later = write_events(store, devices[split:])  # events after the client's cursor
        second, _ = asyncio.run(drain(Cursor.decode(cursor.encode(), 4)))
        assert sorted(second) == sorted(later) and len(set(second)) == len(second)
        for shard in range(4):  # each shard's events keep their order
            seq = [s for sh, s in first + second if sh == shard]
            assert seq == sorted(seq)
    finally:
        store.close()


def test_a_busy_shard_does_not_let_a_quiet_one_jump_ahead(tmp_path: Path) -> None:
    """A page reads a share of each shard, not all of it. One shard with 30 early events and
    another with 5 later ones: the later ones must wait for the pages that bring the early
    ones, not slip in after the busy shard's first share."""
    store = ShardedStore(tmp_path / "log", 4)
    try:
        by_shard: dict[int, list[str]] = {}
        for i in range(200):
            by_shard.setdefault(store.shard_of(f"d{i}"), []).append(f"d{i}")
        busy, quiet = by_shard[0][0], by_shard[1][0]
        write_events(store, [busy] * 30 + [quiet] * 5)

        async def drain() -> list[tuple[str, int, int]]:
            order, cursor = [], Cursor.start(4)
            while True:
                replay = await read_after(store, cursor, 8)  # 4 rows per shard per page
                order += [(p.event.at, p.event.shard, p.event.seq) for p in replay.events]
                cursor = replay.cursor
                if not replay.more:
                    return order

        order = asyncio.run(drain())
        assert len(order) == 35
        assert order == sorted(order)
        assert [shard for _, shard, _ in order] == [0] * 30 + [1] * 5
    finally:
        store.close()


def test_a_cursor_older_than_retention_gets_a_reset(tmp_path: Path) -> None:
    store = ShardedStore(tmp_path, 2)
    try:
        write_events(store, ["a"] * 10 + ["b"] * 10)
        old = Cursor.start(2)
        for shard in range(2):
            store.write_shard(shard, lambda tx: jobs.prune_events(tx, keep=3)).result()
        replay = asyncio.run(read_after(store, old))
        assert replay.reset and replay.events == []
        now = asyncio.run(current_cursor(store))
        fresh = asyncio.run(read_after(store, now))
        assert not fresh.reset and fresh.events == []
    finally:
        store.close()
