"""The delivery policy's jobs on a real store, with the clock passed in: no waiting on time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker_bridge.errors import Conflict, QueueFull, UnknownDevice
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.queries import get_command
from broker_bridge.store.records import Record
from broker_bridge.store.sharded import ShardedStore
from tether.protocol import CommandState, Verdict
from tether.protocol.service import NewCommand

S = CommandState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = DeliveryPolicy(pending_limit=3, redelivery_after=30, max_attempts=3, execution_timeout=300)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Harness:
    def __init__(self, store: ShardedStore) -> None:
        self.store = store
        self.n = 0
        store.write("dev", lambda tx: jobs.create_device(tx, "dev", "dev", T0)).result()

    def accept(self, when: float = 0, **kw: object) -> jobs.Accepted:
        self.n += 1
        new = NewCommand(
            f"cmd-{self.n}",
            kw.pop("device", "dev"),
            "echo",
            {"n": self.n},
            **kw,  # type: ignore[arg-type]
        )
        return self.store.write(
            new.device_id, lambda tx: jobs.accept_command(tx, new, at(when), POLICY)
        ).result()

    def move(
        self, command_id: str, target: CommandState, when: float = 0, **kw: object
    ) -> jobs.Transition:
        return self.store.write(
            "dev",
            lambda tx: jobs.transition(tx, command_id, target, at(when), policy=POLICY, **kw),  # type: ignore[arg-type]
        ).result()

    def sweep(self, when: float) -> list[jobs.Delivery]:
        return self.store.write("dev", lambda tx: jobs.sweep_due(tx, at(when), POLICY)).result()

    def online(self, flag: bool, when: float = 0) -> jobs.PresenceChange:
        return self.store.write(
            "dev", lambda tx: jobs.update_presence(tx, "dev", flag, None, at(when))
        ).result()

    def get(self, command_id: str) -> Record:
        record = self.store.read(
            self.store.shard_of("dev"), lambda c: get_command(c, command_id)
        ).result()
        assert record is not None
        return record


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    store = ShardedStore(tmp_path, 2)
    yield Harness(store)
    store.close()


def test_unknown_device_is_refused(h: Harness) -> None:
    with pytest.raises(UnknownDevice):
        h.accept(device="nobody")


def test_pending_limit_refuses_with_queue_full_and_frees_up(h: Harness) -> None:
    ids = [h.accept().record["id"] for _ in range(3)]
    with pytest.raises(QueueFull):
        h.accept()
    h.move(ids[0], S.SUCCEEDED, result=1)
    assert h.accept().created


def test_idempotency_same_body_same_command_other_body_conflict(h: Harness) -> None:
    first = h.accept(idempotency_key="k", request_hash="h1")
    again = h.accept(idempotency_key="k", request_hash="h1")
    assert again.record["id"] == first.record["id"] and not again.created
    assert again.delivery is None
    with pytest.raises(Conflict):
        h.accept(idempotency_key="k", request_hash="h2")


def test_every_hop_is_timestamped(h: Harness) -> None:
    cid = h.accept(0).record["id"]
    h.move(cid, S.SENT, 1)
    h.move(cid, S.DELIVERED, 2)
    h.move(cid, S.SUCCEEDED, 3, result={"ok": True})
    record = h.get(cid)
    assert record["state"] == "succeeded" and record["result"] == {"ok": True}
    assert list(record["times"]) == ["queued", "sent", "delivered", "succeeded"]
    assert record["times"]["succeeded"] == "2026-01-01T00:00:03.000000Z"


def test_late_and_duplicate_acks_change_nothing(h: Harness) -> None:
    cid = h.accept().record["id"]
    assert h.move(cid, S.SUCCEEDED, 1, result=1).applied  # final ack overtook everything
    assert h.move(cid, S.DELIVERED, 2).verdict is Verdict.FINISHED
    assert h.move(cid, S.SENT, 3).verdict is Verdict.FINISHED
    assert h.move(cid, S.FAILED, 4, error="x").verdict is Verdict.FINISHED
    assert h.move(cid, S.SUCCEEDED, 5, result=2).verdict is Verdict.DUPLICATE
    record = h.get(cid)
    assert (record["state"], record["result"]) == ("succeeded", 1)
    assert "sent" not in record["times"]


def test_ack_from_another_device_is_ignored(h: Harness) -> None:
    cid = h.accept().record["id"]
    outcome = h.store.write(
        "dev", lambda tx: jobs.transition(tx, cid, S.SUCCEEDED, T0, device_id="intruder")
    ).result()
    assert outcome.verdict is None and h.get(cid)["state"] == "queued"


def test_ttl_expires_undelivered_commands(h: Harness) -> None:
    cid = h.accept(0, ttl=10).record["id"]
    assert h.get(cid)["expires_at"] == "2026-01-01T00:00:10.000000Z"
    assert h.sweep(9) == [] and h.get(cid)["state"] == "queued"
    h.sweep(10)
    assert h.get(cid)["state"] == "expired"


def test_redelivery_while_online_then_undeliverable(h: Harness) -> None:
    h.online(True)
    cid = h.accept(0).record["id"]  # attempt 1
    assert [d.id for d in h.sweep(29)] == []
    assert [d.id for d in h.sweep(30)] == [cid]  # attempt 2
    assert [d.id for d in h.sweep(60)] == [cid]  # attempt 3
    assert h.sweep(90) == []
    record = h.get(cid)
    assert (record["state"], record["attempts"]) == ("undeliverable", 3)


def test_no_redelivery_while_offline_but_at_once_on_return(h: Harness) -> None:
    first = h.accept(0).record["id"]
    second = h.accept(1).record["id"]
    assert h.sweep(100) == []
    change = h.online(True, 200)
    assert change.came_online
    deliveries = h.store.write(
        "dev", lambda tx: jobs.redeliver_device(tx, "dev", at(200), POLICY)
    ).result()
    assert [d.id for d in deliveries] == [first, second]  # in acceptance order


def test_execution_timeout(h: Harness) -> None:
    cid = h.accept(0).record["id"]
    h.move(cid, S.DELIVERED, 1)
    h.sweep(300)
    assert h.get(cid)["state"] == "delivered"
    h.sweep(301)
    assert h.get(cid)["state"] == "timed_out"


def test_cancel_only_before_delivery(h: Harness) -> None:
    early = h.accept().record["id"]
    late = h.accept().record["id"]
    h.move(late, S.DELIVERED)
    assert (
        h.store.write("dev", lambda tx: jobs.cancel_command(tx, early, T0)).result().record["state"]
        == "cancelled"
    )
    with pytest.raises(Conflict):
        h.store.write("dev", lambda tx: jobs.cancel_command(tx, late, T0)).result()
    assert h.get(late)["state"] == "delivered"


def test_presence_counts_reconnects_in_the_last_hour(h: Harness) -> None:
    for start in (0, 1000, 2000):
        h.online(True, start)
        h.online(False, start + 50)
    change = h.online(True, 4000)  # the hour before it holds the connects at 1000, 2000, 4000
    assert change.record is not None
    assert change.record["reconnects_last_hour"] == 3


def test_a_returning_device_is_asked_again_for_lost_final_acks(h: Harness) -> None:
    """The broker may lose a final ack (a crash); a device answers a repeat with its stored ack."""
    h.online(True)
    cid = h.accept(0).record["id"]
    h.move(cid, S.DELIVERED, 1)
    for when in (10, 20, 30, 40):  # more returns than max_attempts: still asked, never failed
        again = h.store.write(
            "dev", lambda tx, w=when: jobs.redeliver_device(tx, "dev", at(w), POLICY)
        ).result()
        assert [d.id for d in again] == [cid]
    record = h.get(cid)
    assert record["state"] == "delivered"
    h.sweep(300)
    assert h.get(cid)["state"] == "delivered"  # the execution deadline did not move
    h.sweep(301)
    assert h.get(cid)["state"] == "timed_out"


def test_a_delivered_command_is_asked_again_while_online_until_its_deadline(h: Harness) -> None:
    """A final ack the broker dropped is fetched again: the device re-sends its stored ack."""
    h.online(True)
    cid = h.accept(0).record["id"]
    h.move(cid, S.DELIVERED, 1)
    assert h.sweep(30) == []  # not yet due: 30 s after delivery
    assert [d.id for d in h.sweep(31)] == [cid]
    assert [d.id for d in h.sweep(61)] == [cid]
    assert h.get(cid)["state"] == "delivered"  # asking never ends it, whatever the attempts
    h.online(False)
    assert h.sweep(91) == []  # offline: nobody to ask; only the deadline remains
    h.sweep(301)
    assert h.get(cid)["state"] == "timed_out"
