"""The command journal: what exactly-once rests on. Both kinds keep the same rules."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from devices.errors import JournalError
from devices.journal import Journal, MemoryJournal, SqliteJournal
from tether.protocol import AckMessage, AckStatus, CommandMessage, new_command_id, utc_now

MakeJournal = Callable[[int], Journal]


@pytest.fixture(params=["sqlite", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> MakeJournal:
    if request.param == "sqlite":
        return lambda keep: SqliteJournal(tmp_path / "journal.sqlite3", keep)
    return lambda keep: MemoryJournal(keep)


def cmd(name: str = "echo", **args: object) -> CommandMessage:
    return CommandMessage(new_command_id(), name, utc_now(), dict(args))


def done(command: CommandMessage, status: AckStatus = AckStatus.SUCCEEDED) -> AckMessage:
    error = None if status is AckStatus.SUCCEEDED else "why"
    return AckMessage(command.id, status, utc_now(), result={"ok": 1}, error=error)


def test_received_then_final(make: MakeJournal) -> None:
    journal = make(10)
    c = cmd(x=1)
    assert journal.get(c.id) is None
    journal.record_received(c)
    entry = journal.get(c.id)
    assert entry is not None and not entry.finished and entry.command == c
    assert journal.unfinished() == [entry]
    ack = done(c)
    journal.record_final(ack, c.name)
    entry = journal.get(c.id)
    assert entry is not None and entry.final == ack and entry.command is None
    assert journal.unfinished() == []


def test_a_final_without_received_is_recorded_too(make: MakeJournal) -> None:
    journal = make(10)
    c = cmd()
    journal.record_final(done(c, AckStatus.REJECTED), c.name)
    entry = journal.get(c.id)
    assert entry is not None and entry.final is not None
    assert entry.final.status is AckStatus.REJECTED


def test_confirmation_of_final_acks(make: MakeJournal) -> None:
    journal = make(10)
    a, b = cmd(), cmd()
    for c in (a, b):
        journal.record_received(c)
        journal.record_final(done(c), c.name)
    assert [e.command_id for e in journal.unconfirmed()] == [a.id, b.id]
    journal.mark_confirmed(a.id)
    assert [e.command_id for e in journal.unconfirmed()] == [b.id]


def test_bounded_keeps_the_last_n_and_never_drops_unfinished(make: MakeJournal) -> None:
    journal = make(5)
    stuck = cmd("stuck")
    journal.record_received(stuck)  # the oldest, and never finished
    commands = [cmd(n=i) for i in range(20)]
    for c in commands:
        journal.record_received(c)
        journal.record_final(done(c), c.name)
    kept = [c.id for c in commands if journal.get(c.id) is not None]
    assert kept == [c.id for c in commands[-5:]]
    assert journal.get(stuck.id) is not None
    assert [e.command_id for e in journal.unfinished()] == [stuck.id]


def test_sqlite_journal_survives_reopening_and_uses_wal_full(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    first = SqliteJournal(path)
    running, finished = cmd(), cmd()
    first.record_received(running)
    first.record_received(finished)
    first.record_final(done(finished), finished.name)
    # No close(): a crash. Each write was its own committed transaction.
    second = SqliteJournal(path)
    assert [e.command_id for e in second.unfinished()] == [running.id]
    entry = second.get(finished.id)
    assert entry is not None and entry.final is not None
    assert (entry.final.id, entry.final.status) == (finished.id, AckStatus.SUCCEEDED)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    first.close()
    second.close()


def test_sqlite_journal_errors_are_journal_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(JournalError):
        SqliteJournal(blocker / "j.sqlite3")


def test_the_same_id_received_twice_is_an_error(make: MakeJournal) -> None:
    journal = make(10)
    c = cmd()
    journal.record_received(c)
    with pytest.raises(JournalError):
        journal.record_received(c)  # the same id twice is a bug in the caller, and loud
    journal.close()
