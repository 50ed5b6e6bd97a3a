"""``tether db stats`` on real shard files: counts, sizes, versions and event ranges, read-only."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.schema import SCHEMA_VERSION
from broker_bridge.store.sharded import ShardedStore
from tests.test_store_schema import previous_release_store
from tether.protocol import CommandState
from tether_cli.main import main

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def fill(data_dir: Path) -> None:
    store = ShardedStore(data_dir / "store", 4)
    try:
        for n in range(9):
            device = f"dev-{n}"
            store.write(device, lambda tx, d=device: jobs.create_device(tx, d, d, NOW)).result(10)
            for k in range(n % 3 + 1):
                new = jobs.NewCommand(f"cmd-{n}-{k}", device, "echo", {"k": k})
                store.write(
                    device, lambda tx, c=new: jobs.accept_command(tx, c, NOW, DeliveryPolicy())
                ).result(10)
            first = f"cmd-{n}-0"
            store.write(
                device, lambda tx, c=first: jobs.transition(tx, c, CommandState.SENT, NOW)
            ).result(10)
    finally:
        store.close()


def stats_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    assert main(["db", "stats", "--data-dir", str(data_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_db_stats_counts_every_table_of_every_shard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(tmp_path)
    report = stats_json(tmp_path, capsys)
    shards = report["shards"]
    assert len(shards) == 4
    for shard in shards:
        conn = sqlite3.connect(shard["path"])
        for table in ("devices", "commands", "events", "meta"):
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert shard["rows"][table] == count
        first, last = conn.execute("SELECT min(seq), max(seq) FROM events").fetchone()
        assert shard["event_seq"] == ([first, last] if first is not None else None)
        assert shard["version"] == SCHEMA_VERSION
        assert shard["file_bytes"] == Path(shard["path"]).stat().st_size > 0
        conn.close()
    assert sum(s["rows"]["devices"] for s in shards) == 9
    assert sum(s["rows"]["commands"] for s in shards) == 18
    assert sum(s["rows"]["events"] for s in shards) == 9 + 18 + 9

    assert main(["db", "stats", "--data-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].endswith(f"4 shards, schema version {SCHEMA_VERSION} (this Tether writes 2)")
    assert text[1].split()[:6] == ["shard", "version", "commands", "devices", "events", "meta"]
    assert [line.split()[0] for line in text[2:]] == ["000", "001", "002", "003", "total"]
    assert text[-1].split()[1:5] == ["18", "9", "36", "4"]


def test_db_stats_reports_an_old_store_without_upgrading_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    previous_release_store(tmp_path / "store")
    report = stats_json(tmp_path, capsys)
    assert [s["version"] for s in report["shards"]] == [1, 1]
    conn = sqlite3.connect(tmp_path / "store" / "shard-000.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert "ended_by" not in [row[1] for row in conn.execute("PRAGMA table_info(commands)")]
    conn.close()


def test_db_stats_without_a_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "stats", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no command store in" in err and "Traceback" not in err
    assert not (tmp_path / "store").exists()
