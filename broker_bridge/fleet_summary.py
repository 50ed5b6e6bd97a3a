"""Fleet aggregates across every shard, for ``/api/fleet`` and ``/metrics``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from broker_bridge.store.queries import fleet_counts
from broker_bridge.store.sharded import StoreReader
from tether.protocol import format_time

TOP = 5


async def fleet_summary(store: StoreReader, failures_window: float = 3600) -> dict[str, Any]:
    """Counts from every shard (a failing shard is named)."""
    since = format_time(datetime.now(UTC) - timedelta(seconds=failures_window))
    results = await store.fan_out(partial(fleet_counts, since=since, top=TOP))
    total = online = pending = 0
    states: dict[str, int] = {}
    shards = []
    by_pending: list[tuple[str, int]] = []
    by_failures: list[tuple[str, int]] = []
    slowest: list[tuple[str, float, float, int]] = []
    waits: list[tuple[str, float, int]] = []
    for result in results:
        if not result.ok or result.value is None:
            shards.append(result.status().as_json())
            continue
        value = result.value
        total += value["devices"]
        online += value["online"]
        pending += value["pending"]
        for state, count in value["states"].items():
            states[state] = states.get(state, 0) + count
        by_pending += value["by_pending"]
        by_failures += value["by_failures"]
        slowest += value["slowest"]
        waits += value["waits"]
        shards.append(result.status().as_json())
    return {
        "devices": {"total": total, "online": online, "offline": total - online},
        "pending": pending,
        "commands_by_state": states,
        "top_pending": [
            {"device": d, "pending": n}
            for d, n in sorted(by_pending, key=lambda x: (-x[1], x[0]))[:TOP]
        ],
        "top_failures": [
            {"device": d, "failures": n}
            for d, n in sorted(by_failures, key=lambda x: (-x[1], x[0]))[:TOP]
        ],
        # The time the device itself took (delivered → final), apart from the time commands
        # waited for it to come online and take them (queued → delivered).
        "slowest": [
            {
                "device": d,
                "mean_device_ms": round(device_ms, 1),
                "mean_end_to_end_ms": round(e2e_ms, 1),
                "commands": n,
            }
            for d, device_ms, e2e_ms, n in sorted(slowest, key=lambda x: (-x[1], x[0]))[:TOP]
        ],
        "longest_waits": [
            {"device": d, "mean_wait_ms": round(ms, 1), "commands": n}
            for d, ms, n in sorted(waits, key=lambda x: (-x[1], x[0]))[:TOP]
        ],
        "failures_window_seconds": failures_window,
        "shards": shards,
    }
