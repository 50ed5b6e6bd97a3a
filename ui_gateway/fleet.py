"""Fleet aggregates across every shard, for ``/api/fleet`` and ``/metrics``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from broker_bridge.store.sharded import ShardedStore
from tether.protocol import PENDING_STATES, format_time
from ui_gateway.context import Gateway

_PENDING = tuple(s.value for s in PENDING_STATES)


_PROBLEM_STATES = ("failed", "rejected", "expired", "undeliverable", "timed_out")
TOP = 5


def shard_counts(conn: sqlite3.Connection, since: str) -> dict[str, Any]:
    devices = conn.execute(
        "SELECT count(*), coalesce(sum(online), 0), coalesce(sum(pending), 0) "
        "FROM devices WHERE revoked_at IS NULL"
    ).fetchone()
    states = dict(conn.execute("SELECT state, count(*) FROM commands GROUP BY state").fetchall())
    by_pending = conn.execute(
        "SELECT id, pending FROM devices WHERE revoked_at IS NULL AND pending > 0 "
        "ORDER BY pending DESC, id LIMIT ?",
        (TOP,),
    ).fetchall()
    by_failures = conn.execute(
        f"SELECT device_id, count(*) FROM commands WHERE finished_at >= ? "
        f"AND state IN ({','.join('?' * len(_PROBLEM_STATES))}) "
        "GROUP BY device_id ORDER BY count(*) DESC, device_id LIMIT ?",
        (since, *_PROBLEM_STATES, TOP),
    ).fetchall()
    slowest = conn.execute(
        "SELECT device_id, avg((julianday(finished_at) - julianday(queued_at)) * 86400000.0), "
        "count(*) FROM commands WHERE finished_at >= ? AND state = 'succeeded' "
        "GROUP BY device_id ORDER BY 2 DESC, device_id LIMIT ?",
        (since, TOP),
    ).fetchall()
    return {
        "slowest": [tuple(r) for r in slowest],
        "devices": devices[0],
        "online": devices[1],
        "pending": devices[2],
        "states": states,
        "by_pending": [tuple(r) for r in by_pending],
        "by_failures": [tuple(r) for r in by_failures],
    }


async def fleet_summary(
    store: ShardedStore, extras: dict[str, Any] | None = None, failures_window: float = 3600
) -> dict[str, Any]:
    """Counts from every shard (a failing shard is named), plus ``extras`` from the bridge."""
    since = format_time(datetime.now(UTC) - timedelta(seconds=failures_window))
    results = await store.fan_out(partial(shard_counts, since=since))
    total = online = pending = 0
    states: dict[str, int] = {}
    shards = []
    by_pending: list[tuple[str, int]] = []
    by_failures: list[tuple[str, int]] = []
    slowest: list[tuple[str, float, int]] = []
    for result in results:
        if not result.ok or result.value is None:
            shards.append({"shard": result.shard, "ok": False, "error": result.error})
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
        shards.append({"shard": result.shard, "ok": True})
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
        "slowest": [
            {"device": d, "mean_end_to_end_ms": round(ms, 1), "commands": n}
            for d, ms, n in sorted(slowest, key=lambda x: (-x[1], x[0]))[:TOP]
        ],
        "failures_window_seconds": failures_window,
        "shards": shards,
        **(extras or {}),
    }


def bridge_figures(gateway: Gateway) -> dict[str, Any]:
    """What the bridge knows in memory: hop latencies, states per minute, the broker's $SYS."""
    bridge = gateway.bridge
    return {
        **bridge.latency.summary(),
        "broker": {
            "connected": bridge.session.connected.is_set(),
            **bridge.broker_figures.snapshot(),
        },
        "bridge": dict(bridge.stats),
    }
