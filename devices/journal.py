"""The device's command journal: which command ids it has seen, and the final ack of each.

Exactly-once execution on top of at-least-once delivery rests on two rules:

* a command's row is committed *before* ``received`` is published and before the broker gets its
  PUBACK, so a command the device has not recorded is one the broker will deliver again;
* its final ack is committed right after the handler returns, so a redelivered id is answered
  from the journal instead of running twice.

:class:`SqliteJournal` is the one a real device uses (stdlib ``sqlite3``, WAL,
``synchronous=FULL``). :class:`MemoryJournal` holds the same rules in memory for simulated
devices, which have nothing to survive. Both keep only the last ``keep`` commands; a row whose
command has not finished is never dropped.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from devices.errors import JournalError
from tether.protocol import AckMessage, CommandMessage, ProtocolError, decode_ack, decode_command

DEFAULT_KEEP = 10_000  # far above what a broker queues per device (2000) or a bridge keeps pending


@dataclass(frozen=True, slots=True)
class Entry:
    command_id: str
    name: str
    command: CommandMessage | None  # kept until the final ack is recorded (an idempotent rerun)
    final: AckMessage | None
    confirmed: bool = False  # the broker acknowledged (PUBACK) the final ack

    @property
    def finished(self) -> bool:
        return self.final is not None


class Journal(Protocol):
    def get(self, command_id: str) -> Entry | None: ...

    def record_received(self, command: CommandMessage) -> None:
        """Record a command about to run; durable when this returns."""

    def record_final(self, ack: AckMessage, name: str = "") -> None:
        """Record a command's final ack (inserting the row if the command never ran)."""

    def mark_confirmed(self, command_id: str) -> None: ...

    def unfinished(self) -> list[Entry]:
        """Commands recorded as received with no final ack, oldest first (after a crash)."""

    def unconfirmed(self) -> list[Entry]:
        """Finished commands whose final ack the broker has not acknowledged, oldest first."""

    def close(self) -> None: ...


class MemoryJournal:
    """The journal's rules without a disk, for simulated devices. Not thread-safe."""

    def __init__(self, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError("a journal must keep at least one command")
        self.keep = keep
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # in order of arrival
        self._seqs: dict[str, int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, command_id: str) -> Entry | None:
        return self._entries.get(command_id)

    def record_received(self, command: CommandMessage) -> None:
        if command.id in self._entries:
            raise JournalError(f"command {command.id} is already in the journal")
        self._insert(Entry(command.id, command.name, command, None))

    def record_final(self, ack: AckMessage, name: str = "") -> None:
        old = self._entries.get(ack.id)
        if old is None:
            self._insert(Entry(ack.id, name, None, ack))
        else:
            self._entries[ack.id] = replace(old, command=None, final=ack, confirmed=False)

    def mark_confirmed(self, command_id: str) -> None:
        old = self._entries.get(command_id)
        if old is not None and old.final is not None:
            self._entries[command_id] = replace(old, confirmed=True)

    def unfinished(self) -> list[Entry]:
        return [e for e in self._entries.values() if e.final is None]

    def unconfirmed(self) -> list[Entry]:
        return [e for e in self._entries.values() if e.final is not None and not e.confirmed]

    def close(self) -> None:
        pass

    def _insert(self, entry: Entry) -> None:
        self._seq += 1
        self._entries[entry.command_id] = entry
        self._seqs[entry.command_id] = self._seq
        # Same rule as SQLite: drop finished commands older than the last `keep` arrivals.
        limit = self._seq - self.keep
        doomed = []
        for command_id, old in self._entries.items():
            if self._seqs[command_id] > limit:
                break
            if old.final is not None:
                doomed.append(command_id)
        for command_id in doomed:
            del self._entries[command_id], self._seqs[command_id]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    name      TEXT NOT NULL,
    command   BLOB,              -- the command as received, dropped once it has a final ack
    final     BLOB,              -- the encoded final ack
    confirmed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commands_unfinished ON commands(seq) WHERE final IS NULL;
"""


class SqliteJournal:
    """A journal in one SQLite file, safe to share between threads (one lock, one connection).

    WAL with ``synchronous=FULL``: every commit is fsynced before it returns. ``NORMAL`` would be
    enough to survive the agent process crashing, but not the device losing power; since the
    broker forgets a command once it has its PUBACK, a commit that a power cut could roll back
    would be a command lost or run twice. Commands are rare on a device, so one fsync each is cheap.
    """

    def __init__(self, path: str | Path, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise ValueError("a journal must keep at least one command")
        self.path = Path(path)
        self.keep = keep
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the command journal {path}: {exc}") from exc

    def get(self, command_id: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, command, final, confirmed FROM commands WHERE id = ?",
                (command_id,),
            ).fetchone()
        return None if row is None else _entry(row)

    def record_received(self, command: CommandMessage) -> None:
        with self._lock, self._write():
            self._db.execute(
                "INSERT INTO commands (id, name, command) VALUES (?, ?, ?)",
                (command.id, command.name, command.encode()),
            )
            self._prune()

    def record_final(self, ack: AckMessage, name: str = "") -> None:
        with self._lock, self._write():
            # UPDATE first: an upsert would use up a sequence number, and seq counts arrivals.
            updated = self._db.execute(
                "UPDATE commands SET final = ?, command = NULL, confirmed = 0 WHERE id = ?",
                (ack.encode(), ack.id),
            ).rowcount
            if not updated:
                self._db.execute(
                    "INSERT INTO commands (id, name, final) VALUES (?, ?, ?)",
                    (ack.id, name, ack.encode()),
                )
                self._prune()

    def mark_confirmed(self, command_id: str) -> None:
        with self._lock, self._write():
            self._db.execute(
                "UPDATE commands SET confirmed = 1 WHERE id = ? AND final IS NOT NULL",
                (command_id,),
            )

    def unfinished(self) -> list[Entry]:
        return self._select("final IS NULL")

    def unconfirmed(self) -> list[Entry]:
        return self._select("final IS NOT NULL AND confirmed = 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM commands").fetchone()
        return int(count)

    def _select(self, where: str) -> list[Entry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, name, command, final, confirmed FROM commands WHERE {where} "
                "ORDER BY seq"
            ).fetchall()
        return [_entry(row) for row in rows]

    def _write(self) -> _Transaction:
        return _Transaction(self._db)

    def _prune(self) -> None:
        self._db.execute(
            "DELETE FROM commands WHERE final IS NOT NULL "
            "AND seq <= (SELECT MAX(seq) FROM commands) - ?",
            (self.keep,),
        )


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK``), raising :class:`JournalError`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise JournalError(f"journal write failed: {exc}") from exc

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        except sqlite3.Error as error:
            raise JournalError(f"journal write failed: {error}") from error
        if isinstance(exc, sqlite3.Error):
            raise JournalError(f"journal write failed: {exc}") from exc


def _entry(row: tuple[str, str, bytes | None, bytes | None, int]) -> Entry:
    command_id, name, command_raw, final_raw, confirmed = row
    try:
        command = decode_command(command_raw) if command_raw is not None else None
        final = decode_ack(final_raw) if final_raw is not None else None
    except ProtocolError as exc:
        raise JournalError(f"journal row {command_id} is unreadable: {exc}") from exc
    return Entry(command_id, name, command, final, bool(confirmed))
