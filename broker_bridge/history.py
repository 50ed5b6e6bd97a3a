"""Recent fleet history for ``GET /api/fleet/history``: one point per minute over a range.

Derived from the store (the commands' per-state times), not from what this process saw, so a
dashboard opened after a burst, or after a restart, still shows it. The SQL is in
:func:`broker_bridge.store.queries.shard_history`; this module merges the shards' buckets (pure).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

from broker_bridge.latency import FINE_BOUNDS, Histogram
from broker_bridge.store.queries import HISTORY_HOPS, ShardHistory, shard_history
from broker_bridge.store.sharded import StoreReader
from tether.protocol import format_time
from tether.protocol.service import HISTORY_RANGES as RANGES

STEP_SECONDS = 60


def _quantile_ms(histogram: Histogram, q: float) -> float | None:
    value = histogram.quantile(q)
    return None if value is None else round(value * 1000, 3)


def _minute_epoch(minute: str) -> int:
    """``2026-11-29T12:03`` (UTC) → its epoch seconds."""
    return int(datetime.fromisoformat(minute + ":00+00:00").timestamp())


def _minutes(now: datetime, range_seconds: int) -> tuple[int, int]:
    """The epoch seconds of the range's first minute and of the current one."""
    last = int(now.timestamp()) // STEP_SECONDS * STEP_SECONDS
    return last - range_seconds + STEP_SECONDS, last


def merge_history(parts: list[ShardHistory], now: datetime, range_seconds: int) -> dict[str, Any]:
    """One point per minute from the first minute of the range to the current one (minutes
    without commands included, so a chart's time axis is whole), and each hop over the range."""
    first, last = _minutes(now, range_seconds)
    finished: dict[int, dict[str, int]] = {}
    latency: dict[int, Histogram] = {}
    hops = {hop: Histogram(FINE_BOUNDS) for hop in HISTORY_HOPS}
    for part in parts:
        for minute, state, count in part.finished:
            states = finished.setdefault(_minute_epoch(minute), {})
            states[state] = states.get(state, 0) + count
        for minute, bucket, count, low, high in part.end_to_end:
            histogram = latency.setdefault(_minute_epoch(minute), Histogram(FINE_BOUNDS))
            histogram.add_bucket(bucket, count, low, high, 0.0)
        for hop, rows in part.hops.items():
            for bucket, count, low, high, total in rows:
                hops[hop].add_bucket(bucket, count, low, high, total)
    points = []
    for t in range(first, last + 1, STEP_SECONDS):
        states = finished.get(t, {})
        buckets = latency.get(t)
        points.append(
            {
                "t": t,
                "finished": sum(states.values()),
                "states": states,
                "count": buckets.n if buckets else 0,
                "p50_ms": _quantile_ms(buckets, 0.5) if buckets else None,
                "p99_ms": _quantile_ms(buckets, 0.99) if buckets else None,
            }
        )
    return {
        "step_seconds": STEP_SECONDS,
        "from": first,
        "to": last + STEP_SECONDS,
        "points": points,
        "latency_ms": {
            hop: {
                "count": b.n,
                "p50": _quantile_ms(b, 0.5),
                "p99": _quantile_ms(b, 0.99),
                "mean": round(b.total / b.n * 1000, 3) if b.n else None,
            }
            for hop, b in hops.items()
        },
    }


async def fleet_history(
    store: StoreReader, range_name: str, now: datetime | None = None
) -> dict[str, Any]:
    """The history of the last ``range_name`` (a key of :data:`RANGES`) from every shard; a
    shard that cannot be read is named and left out."""
    now = now or datetime.now(UTC)
    range_seconds = RANGES[range_name]
    since = datetime.fromtimestamp(_minutes(now, range_seconds)[0], UTC)
    results = await store.fan_out(partial(shard_history, since=format_time(since)))
    parts = [r.value for r in results if r.ok and r.value is not None]
    shards = [r.status().as_json() for r in results]
    return {
        "range": range_name,
        "range_seconds": range_seconds,
        **merge_history(parts, now, range_seconds),
        "shards": shards,
    }
