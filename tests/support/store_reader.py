"""Read a store's shard files directly, read-only, from outside the process that writes them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tether.protocol import CommandState


def _shards(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob("shard-*.sqlite3"))


def _query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def commands(data_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in _shards(data_dir):
        for row in _query(path, "SELECT * FROM commands"):
            out[row["id"]] = dict(row)
    return out


def all_terminal(data_dir: Path) -> bool:
    found = commands(data_dir)
    return bool(found) and all(CommandState(c["state"]).is_terminal for c in found.values())


def state_histories(data_dir: Path) -> dict[str, list[str]]:
    """Each command's states in the order its events were committed."""
    out: dict[str, list[str]] = {}
    for path in _shards(data_dir):
        for row in _query(path, "SELECT data FROM events WHERE kind = 'command' ORDER BY seq"):
            record = json.loads(row["data"])
            out.setdefault(record["id"], []).append(record["state"])
    return out


def moved_backwards(histories: dict[str, list[str]]) -> list[str]:
    bad = []
    for command_id, states in histories.items():
        ranks = [CommandState(s).rank for s in states]
        if ranks != sorted(ranks) or len(set(states)) != len(states):
            bad.append(command_id)
    return bad
