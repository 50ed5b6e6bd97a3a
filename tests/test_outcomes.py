"""Honest outcomes (issue 13): the pure rules, then the store carrying them out (clock passed in).

The end-to-end versions, with a plain paho device and the agent on a real broker, are in
``tests/test_honest_outcomes.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker_bridge.errors import Conflict
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from tests.test_delivery_policy import POLICY, T0, Harness, at
from tether.protocol import AckMessage, AckStatus, CommandState, format_time
from tether.protocol.outcomes import CancelMode, EndedBy, is_late, plan_cancel

S = CommandState


# --- the pure rules -------------------------------------------------------------------------


@given(st.sampled_from(list(S)), st.integers(0, 20), st.sets(st.sampled_from(["cancel", "x"])))
def test_cancel_is_exact_only_for_what_never_left_the_store(
    state: CommandState, attempts: int, features: set[str]
) -> None:
    plan = plan_cancel(state, attempts, features)
    if state.is_terminal or state is S.DELIVERED:
        assert not plan.applies and plan.reason
    elif attempts == 0:
        assert plan.mode is CancelMode.DONE and not plan.notify_device
    else:
        assert plan.mode is CancelMode.REQUESTED
        assert plan.notify_device == ("cancel" in features)


@given(
    st.sampled_from(list(S)),
    st.sampled_from([None, *EndedBy]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([s.state for s in AckStatus]),
)
def test_late_outcomes_only_add_facts(
    state: CommandState,
    ended_by: EndedBy | None,
    delivered: bool,
    late_is_final: bool,
    reported: CommandState,
) -> None:
    late = is_late(state, ended_by, delivered, late_is_final, reported)
    if not state.is_terminal or ended_by is EndedBy.DEVICE or late_is_final:
        assert not late  # a pending command moves instead; the device's own word is not repeated
    elif reported is S.DELIVERED:
        assert late == (not delivered)
    else:
        assert late  # a final report on a command Tether or an operator ended: always kept


# --- the store carries them out -------------------------------------------------------------


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    store = ShardedStore(tmp_path, 2)
    yield Harness(store)
    store.close()


def ack(
    h: Harness, command_id: str, status: AckStatus, when: float, **kw: object
) -> jobs.Transition:
    message = AckMessage(command_id, status, format_time(at(when)), **kw)  # type: ignore[arg-type]
    return h.store.write(
        "dev", lambda tx: jobs.record_ack(tx, "dev", message, at(when), POLICY)
    ).result()


def cancel(h: Harness, command_id: str) -> jobs.Cancelled:
    return h.store.write("dev", lambda tx: jobs.cancel_command(tx, command_id, T0)).result()


def test_a_known_offline_device_gets_nothing_published_and_cancel_is_exact(h: Harness) -> None:
    h.online(True)
    h.online(False)
    accepted = h.accept()
    assert accepted.delivery is None  # not handed to the broker
    assert (accepted.record["state"], accepted.record["attempts"]) == ("queued", 0)
    assert h.sweep(10_000) == []  # no redelivery while offline
    cancelled = cancel(h, accepted.record["id"])
    assert cancelled.record["state"] == "cancelled"
    assert (cancelled.record["cancel"], cancelled.record["ended_by"]) == ("done", "operator")
    change = h.online(True, 20_000)
    redelivered = h.store.write(
        "dev", lambda tx: jobs.redeliver_device(tx, "dev", at(20_000), POLICY)
    ).result()
    assert change.came_online and redelivered == []


def test_a_held_command_goes_out_when_the_device_returns(h: Harness) -> None:
    h.online(True)
    h.online(False)
    first, second = h.accept().record["id"], h.accept().record["id"]
    h.online(True, 5)
    redelivered = h.store.write(
        "dev", lambda tx: jobs.redeliver_device(tx, "dev", at(5), POLICY)
    ).result()
    assert [d.id for d in redelivered] == [first, second]
    assert h.get(first)["attempts"] == 1


def test_a_held_command_expires_exactly(h: Harness) -> None:
    h.online(True)
    h.online(False)
    cid = h.accept(ttl=10).record["id"]
    h.sweep(11)
    record = h.get(cid)
    assert (record["state"], record["attempts"], record["ended_by"]) == ("expired", 0, "tether")


def test_a_device_of_unknown_presence_still_gets_its_command_at_once(h: Harness) -> None:
    accepted = h.accept()  # it never sent a status: the broker session is the only way to it
    assert accepted.delivery is not None and accepted.record["attempts"] == 1


def test_cancel_of_a_published_command_is_only_requested(h: Harness) -> None:
    h.online(True)
    cid = h.accept().record["id"]
    cancelled = cancel(h, cid)
    assert (cancelled.record["state"], cancelled.record["cancel"]) == ("cancelled", "requested")
    assert "may still run it" in cancelled.record["error"]
    assert not cancelled.notify_device  # the device did not advertise the feature


def test_cancel_notice_only_for_a_device_that_can_honour_it(h: Harness) -> None:
    h.store.write(
        "dev", lambda tx: jobs.update_presence(tx, "dev", True, None, T0, features=("cancel",))
    ).result()
    assert cancel(h, h.accept().record["id"]).notify_device


def test_cancel_of_a_delivered_command_is_refused(h: Harness) -> None:
    h.online(True)
    cid = h.accept().record["id"]
    ack(h, cid, AckStatus.RECEIVED, 1)
    with pytest.raises(Conflict, match="delivered"):
        cancel(h, cid)


def test_a_run_after_cancel_is_kept_as_the_late_outcome(h: Harness) -> None:
    h.online(True)
    cid = h.accept().record["id"]
    cancel(h, cid)
    got = ack(h, cid, AckStatus.RECEIVED, 2)
    assert got.late and got.record is not None
    assert got.record["late"] == {"status": "received", "at": format_time(at(2))}
    got = ack(h, cid, AckStatus.SUCCEEDED, 3, result={"ok": 1})
    assert got.late
    record = h.get(cid)
    assert record["state"] == "cancelled"  # states stay forward-only
    assert record["late"] == {"status": "succeeded", "result": {"ok": 1}, "at": format_time(at(3))}
    # A re-sent final ack (the device's journal) or an overtaken `received` changes nothing more.
    assert not ack(h, cid, AckStatus.SUCCEEDED, 4, result={"ok": 1}).late
    assert not ack(h, cid, AckStatus.RECEIVED, 5).late
    assert h.get(cid)["late"]["at"] == format_time(at(3))


def test_timed_out_then_succeeded_says_so(h: Harness) -> None:
    h.online(True)
    cid = h.accept().record["id"]
    ack(h, cid, AckStatus.RECEIVED, 1)
    h.sweep(400)
    assert h.get(cid)["state"] == "timed_out"
    assert ack(h, cid, AckStatus.SUCCEEDED, 500, result=7).late
    assert h.get(cid)["late"]["status"] == "succeeded"


def test_undeliverable_then_failed_says_so(h: Harness) -> None:
    h.online(True)
    cid = h.accept().record["id"]
    for n in range(1, 4):
        h.sweep(31 * n)
    assert h.get(cid)["state"] == "undeliverable"
    assert ack(h, cid, AckStatus.FAILED, 200, error="boom").late
    assert h.get(cid)["late"] == {"status": "failed", "error": "boom", "at": format_time(at(200))}


def test_the_devices_own_outcome_is_not_repeated_as_late(h: Harness) -> None:
    h.online(True)
    cid = h.accept().record["id"]
    ack(h, cid, AckStatus.SUCCEEDED, 1, result=1)
    assert h.get(cid)["ended_by"] == "device"
    assert not ack(h, cid, AckStatus.SUCCEEDED, 2, result=1).late
    assert not ack(h, cid, AckStatus.RECEIVED, 3).late
    assert h.get(cid)["late"] is None


def test_the_cli_says_what_a_terminal_record_cannot_promise() -> None:
    from tether_cli.client import outcome_note

    ran = {"state": "cancelled", "late": {"status": "succeeded", "at": "T"}}
    assert outcome_note(ran) == "cancelled, but the device ran it at T: succeeded"
    confirmed = {"state": "cancelled", "late": {"status": "cancelled", "at": "T"}}
    assert "confirmed" in outcome_note(confirmed)
    answered = {"state": "undeliverable", "late": {"status": "expired", "at": "T"}}
    assert outcome_note(answered) == "undeliverable, and the device answered at T: expired, not run"
    held = {"state": "cancelled", "attempts": 0, "ended_by": "operator", "late": None}
    assert outcome_note(held) == ""  # it never left Tether: nothing to add
    handed = {"state": "cancelled", "attempts": 1, "ended_by": "operator", "late": None}
    assert "may still run" in outcome_note(handed)
    assert "may still finish" in outcome_note({"state": "timed_out", "late": None})
    assert outcome_note({"state": "succeeded", "attempts": 1, "ended_by": "device"}) == ""


def test_an_ack_confirms_a_replayed_presence(h: Harness) -> None:
    from broker_bridge.store.queries import get_device

    def device() -> dict[str, object]:
        found = h.store.read(h.store.shard_of("dev"), lambda c: get_device(c, "dev")).result()
        assert found is not None
        return found

    h.store.write(
        "dev", lambda tx: jobs.update_presence(tx, "dev", True, None, T0, live=False)
    ).result()
    assert (device()["online"], device()["confirmed"]) == (True, False)  # only the broker said so
    ack(h, h.accept().record["id"], AckStatus.RECEIVED, 1)
    assert device()["confirmed"] is True  # the device itself spoke


def test_a_command_event_names_its_command_without_being_decoded(h: Harness) -> None:
    from tether.protocol.service import command_id_of

    accepted = h.accept()
    assert command_id_of(accepted.record_json) == accepted.record["id"]
    assert command_id_of('{"device":"dev","online":true}') is None  # a presence record
