"""Fleet aggregates across every shard, for ``/api/fleet`` and ``/metrics``."""

from __future__ import annotations

import sqlite3
from typing import Any

from broker_bridge.store.sharded import ShardedStore
from tether.protocol import PENDING_STATES

_PENDING = tuple(s.value for s in PENDING_STATES)


def shard_counts(conn: sqlite3.Connection) -> dict[str, Any]:
    devices = conn.execute(
        "SELECT count(*), coalesce(sum(online), 0), coalesce(sum(pending), 0) "
        "FROM devices WHERE revoked_at IS NULL"
    ).fetchone()
    states = dict(conn.execute("SELECT state, count(*) FROM commands GROUP BY state").fetchall())
    return {"devices": devices[0], "online": devices[1], "pending": devices[2], "states": states}


async def fleet_summary(store: ShardedStore) -> dict[str, Any]:
    results = await store.fan_out(shard_counts)
    total = online = pending = 0
    states: dict[str, int] = {}
    shards = []
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
        shards.append({"shard": result.shard, "ok": True})
    return {
        "devices": {"total": total, "online": online, "offline": total - online},
        "pending": pending,
        "commands_by_state": states,
        "shards": shards,
    }
