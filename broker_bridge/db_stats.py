"""``tether db stats``: what the command store holds, shard by shard, read with sqlite-utils.

Rows per table, file sizes (the database and its write-ahead log), the schema version, and the
range of event sequence numbers each shard still keeps. It opens every shard read-only and never
migrates one, so it is safe next to a running bridge and on a store from another release (its
version is reported, not changed).
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from broker_bridge.store.schema import SCHEMA_VERSION
from broker_bridge.store.sharded import StoreConfigError, read_manifest


@dataclass(frozen=True, slots=True)
class ShardStats:
    shard: int
    path: str
    version: int
    rows: dict[str, int]  # table -> row count
    file_bytes: int
    wal_bytes: int
    event_seq: tuple[int, int] | None  # first and last kept; None: no events
    events_pruned_through: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    store: str
    shards: list[ShardStats]
    this_version: int = SCHEMA_VERSION

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def collect(store_dir: Path) -> StoreStats:
    """Read every shard of the store in ``store_dir`` (``<data-dir>/store``)."""
    manifest = read_manifest(store_dir)
    if manifest is None:
        raise StoreConfigError(f"no command store in {store_dir} (no store.json)")
    count = int(manifest["shards"])
    return StoreStats(str(store_dir), [_shard(store_dir, n) for n in range(count)])


def _shard(store_dir: Path, shard: int) -> ShardStats:
    path = store_dir / f"shard-{shard:03d}.sqlite3"
    if not path.exists():
        raise StoreConfigError(f"{path} is missing")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        db = Database(conn, recursive_triggers=False, execute_plugins=False)
        names = [name for name in db.table_names() if not name.startswith("sqlite_")]
        rows = {name: db.table(name).count for name in names}
        seq = None
        if "events" in names:
            first, last = conn.execute("SELECT min(seq), max(seq) FROM events").fetchone()
            seq = (int(first), int(last)) if first is not None else None
        pruned = 0
        if "meta" in names:
            found = conn.execute(
                "SELECT value FROM meta WHERE key = 'events_pruned_through'"
            ).fetchone()
            pruned = int(found[0]) if found else 0
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return ShardStats(
        shard,
        str(path),
        version,
        rows,
        path.stat().st_size,
        wal.stat().st_size if wal.exists() else 0,
        seq,
        pruned,
    )


def render(stats: StoreStats) -> str:
    tables = sorted({name for shard in stats.shards for name in shard.rows})
    versions = sorted({shard.version for shard in stats.shards})
    head = (
        f"store {stats.store}: {len(stats.shards)} shards, schema version "
        f"{'/'.join(map(str, versions))} (this Tether writes {stats.this_version})"
    )
    header = ["shard", "version", *tables, "db+wal", "event seq"]
    lines = [header]
    for shard in stats.shards:
        seq = f"{shard.event_seq[0]}..{shard.event_seq[1]}" if shard.event_seq else "-"
        lines.append(
            [
                f"{shard.shard:03d}",
                str(shard.version),
                *(str(shard.rows.get(name, 0)) for name in tables),
                _size(shard.file_bytes + shard.wal_bytes),
                seq,
            ]
        )
    total_bytes = sum(s.file_bytes + s.wal_bytes for s in stats.shards)
    totals = (str(sum(s.rows.get(name, 0) for s in stats.shards)) for name in tables)
    lines.append(["total", "", *totals, _size(total_bytes), ""])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    table = [
        "  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                  enumerate(zip(row, widths, strict=True))).rstrip()
        for row in lines
    ]  # fmt: skip
    return "\n".join([head, *table])


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
