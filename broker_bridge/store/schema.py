"""Versioned schema migrations of one shard. Append a migration; never edit a shipped one.

Each migration runs in one transaction together with the ``user_version`` bump, so a crash
mid-migration leaves the shard at the previous version, never half-migrated.
"""

from __future__ import annotations

import sqlite3

from tether.protocol.errors import TetherError

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

# Honest outcomes: who ended a command, what a cancel could promise, what the device reported
# after the end; presence that is only trusted once the device (or the broker, now) says so.
_V2 = """
ALTER TABLE commands ADD COLUMN ended_by TEXT;  -- device | operator | tether
ALTER TABLE commands ADD COLUMN cancel TEXT;  -- done | requested
ALTER TABLE commands ADD COLUMN late TEXT;  -- JSON {status, result?, error?, at}: after the end
ALTER TABLE devices ADD COLUMN features TEXT NOT NULL DEFAULT '[]';
ALTER TABLE devices ADD COLUMN status_seen INTEGER NOT NULL DEFAULT 0;  -- it ever sent a status
ALTER TABLE devices ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 0;  -- spoke since bridge start
ALTER TABLE devices ADD COLUMN status_checked INTEGER NOT NULL DEFAULT 0;  -- broker replayed it
"""

MIGRATIONS: list[str] = [_V1, _V2]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(TetherError, RuntimeError):
    """A shard whose schema this release cannot use (made by a newer one, or damaged)."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the shard to :data:`SCHEMA_VERSION`. ``conn`` must be in autocommit mode."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"shard schema version {version} is newer than this Tether ({SCHEMA_VERSION}): upgrade"
        )
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would commit on its own)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line.split("--", 1)[0] if "--" in line else line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return [s for s in out if s]
