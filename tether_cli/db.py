"""``tether db stats``: what the command store holds, read-only (it never migrates a shard)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from broker_bridge.db_stats import collect, render
from tether.settings import setting
from tether_cli.flags import add_flags, build
from tether_cli.options import DataDirs


@dataclass(frozen=True, slots=True)
class DbOptions:
    json: bool = setting(False, env="DB_JSON", help="print JSON")


def cmd_db_stats(args: argparse.Namespace) -> int:
    dirs: DataDirs = build(DataDirs, args)
    stats = collect(dirs.data_dir / "store")
    options: DbOptions = build(DbOptions, args)
    print(json.dumps(stats.as_json(), indent=1) if options.json else render(stats))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db",
        help="inspect the command store: `db stats` shows rows per table and shard, file sizes, "
        "schema version and event seq range",
    )
    db.add_argument("action", choices=["stats"], help="what to show")
    add_flags(db, DataDirs, only=("data_dir",))
    add_flags(db, DbOptions)
    db.set_defaults(handler=cmd_db_stats)
