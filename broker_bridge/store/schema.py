"""Versioned schema migrations of one shard, with sqlite-utils. Append; never edit a shipped one.

A migration is a function of a :class:`sqlite_utils.Database`, registered in order by
``@migration``; a shard's version (``PRAGMA user_version``) is how many of them it has had.
Each runs in one transaction (``db.atomic()``) together with the version bump, so a crash
mid-migration leaves the shard at the previous version, never half-migrated. A new column is
one function at the end of this file::

    @migration
    def v3_acting_token(db: Database) -> None:
        db.table("commands").add_column("by", str)

sqlite-utils runs only here, when a shard opens; the store's reads and writes stay on raw
``sqlite3`` (its hot path, ``bench/store_transitions.py``). Version 1 is the SQL the first
release shipped, kept as it ran: sqlite-utils' ``create()`` has no AUTOINCREMENT, UNIQUE column
or partial index, which it uses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

from tether.protocol.errors import TetherError

Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next version (the order of the file is the order of versions)."""
    MIGRATIONS.append(fn)
    return fn


_V1 = """
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    provisioned_at TEXT NOT NULL,
    revoked_at TEXT,
    online INTEGER NOT NULL DEFAULT 0,
    last_seen TEXT,
    connected_since TEXT,
    agent TEXT,
    reconnects TEXT NOT NULL DEFAULT '[]',  -- JSON list of recent connect times
    pending INTEGER NOT NULL DEFAULT 0  -- commands not yet terminal, kept by the same writes
);
CREATE TABLE commands (
    seq INTEGER PRIMARY KEY,  -- acceptance order within the shard, hence within each device
    id TEXT NOT NULL UNIQUE,
    device_id TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    request_hash TEXT,
    issued_at TEXT NOT NULL,
    expires_at TEXT,
    result TEXT,
    error TEXT,
    queued_at TEXT NOT NULL,
    sent_at TEXT,
    delivered_at TEXT,
    finished_at TEXT,
    last_attempt_at TEXT,
    due_at TEXT  -- when the delivery policy must look at it next; NULL once terminal
);
CREATE INDEX commands_device_seq ON commands (device_id, seq);
CREATE INDEX commands_device_state ON commands (device_id, state, seq);
CREATE INDEX commands_due ON commands (due_at) WHERE due_at IS NOT NULL;
CREATE UNIQUE INDEX commands_idempotency ON commands (device_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX commands_finished ON commands (finished_at);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after pruning
    kind TEXT NOT NULL,
    device_id TEXT,
    at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('events_pruned_through', '0');
"""


@migration
def v1_initial(db: Database) -> None:
    for statement in _statements(_V1):
        db.execute(statement)


@migration
def v2_honest_outcomes(db: Database) -> None:
    """Who ended a command, what a cancel could promise, what the device reported after the end;
    presence that is only trusted once the device (or the broker, now) says so."""
    commands = db.table("commands")
    commands.add_column("ended_by", str)  # device | operator | tether
    commands.add_column("cancel", str)  # done | requested
    commands.add_column("late", str)  # JSON {status, result?, error?, at}: after the end
    devices = db.table("devices")
    devices.add_column("features", str, not_null_default="[]")
    devices.add_column("status_seen", int, not_null_default=0)  # it ever sent a status
    devices.add_column("confirmed", int, not_null_default=0)  # spoke since bridge start
    devices.add_column("status_checked", int, not_null_default=0)  # broker replayed it


SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(TetherError, RuntimeError):
    """A shard whose schema this release cannot use (made by a newer one, or damaged)."""


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the shard to :data:`SCHEMA_VERSION`. ``conn`` must be in autocommit mode, and the
    only one migrating this shard (the data directory has one stack at a time)."""
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"shard schema version {version} is newer than this Tether ({SCHEMA_VERSION}): upgrade"
        )
    # Leave the store's connection as it was set up: no recursive triggers, no plugins.
    db = Database(conn, recursive_triggers=False, execute_plugins=False)
    for number in range(version, SCHEMA_VERSION):
        with db.atomic():
            MIGRATIONS[number](db)
            db.execute(f"PRAGMA user_version = {number + 1}")
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit on its own)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line.split("--", 1)[0] if "--" in line else line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return [s for s in out if s]
