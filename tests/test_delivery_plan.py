"""The delivery policy as a pure function: properties of :func:`broker_bridge.delivery.plan`,
without SQLite; then the few store paths the one plan made consistent, on a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from broker_bridge.delivery import (
    Action,
    CommandView,
    DeviceView,
    Expire,
    GiveUp,
    Hold,
    Occasion,
    Publish,
    Settle,
    TimeOut,
    Wait,
    earliest,
    execution_deadline,
    expires_at,
    is_expired,
    later,
    plan,
    seconds_left,
)
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from tests.test_delivery_policy import POLICY, Harness, at
from tether.protocol import CommandState, decide, format_time

S = CommandState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
UNDELIVERED = (S.QUEUED, S.SENT)

policies = st.builds(
    DeliveryPolicy,
    redelivery_after=st.floats(0.5, 600),
    max_attempts=st.integers(1, 12),
    execution_timeout=st.floats(1, 3600),
)
moments = st.integers(0, 10**12).map(lambda us: T0 + timedelta(microseconds=us))
# offsets around now, in microseconds, so "exactly now" and one microsecond either side occur
offsets = st.one_of(st.integers(-3, 3), st.integers(-(10**10), 10**10))
ANY_STATE = st.sampled_from(list(S))
ATTEMPTS = st.integers(0, 2) | st.integers(0, 15)  # 0: never left the store
DEVICES = st.builds(DeviceView, online=st.booleans(), status_seen=st.booleans())
KNOWN_OFFLINE = st.just(DeviceView(online=False, status_seen=True))


def stamp(now: datetime, offset_us: int) -> str:
    return format_time(now + timedelta(microseconds=offset_us))


@st.composite
def situations(
    draw: st.DrawFn,
    states: st.SearchStrategy[CommandState] = ANY_STATE,
    attempts: st.SearchStrategy[int] = ATTEMPTS,
    device: st.SearchStrategy[DeviceView] = DEVICES,
) -> tuple[CommandView, DeviceView, datetime, DeliveryPolicy, Occasion]:
    now = draw(moments)
    policy = draw(policies)
    state = draw(states)
    delivered_at = None
    if state is S.DELIVERED:  # around its execution deadline, which may be exactly now
        delivered = now - timedelta(seconds=policy.execution_timeout)
        delivered_at = stamp(delivered, draw(offsets))
    command = CommandView(
        state,
        attempts=draw(attempts),
        expires_at=draw(st.none() | offsets.map(lambda o: stamp(now, o))),
        delivered_at=delivered_at,
        due_at=draw(st.none() | offsets.map(lambda o: stamp(now, o))),
    )
    return command, draw(device), now, policy, draw(st.sampled_from(list(Occasion)))


Situation = tuple[CommandView, DeviceView, datetime, DeliveryPolicy, Occasion]


def due(command: CommandView, now: datetime) -> bool:
    return command.due_at is not None and command.due_at <= format_time(now)


def acts(command: CommandView, now: datetime, occasion: Occasion) -> bool:
    """The plan may do something: a handoff, or the sweeper once it is due."""
    return occasion is Occasion.HANDOFF or due(command, now)


# --- the expiry rule ------------------------------------------------------------------------


@given(moments, offsets)
def test_a_command_expires_at_its_expires_at_inclusive(now: datetime, offset: int) -> None:
    deadline = stamp(now, offset)
    assert is_expired(deadline, now) == (offset <= 0)
    left = seconds_left(deadline, now)
    assert left is not None and (left <= 0) == is_expired(deadline, now)
    assert not is_expired(None, now) and seconds_left(None, now) is None


@given(moments, st.none() | st.floats(0.001, 10**6), st.none() | st.floats(0.001, 10**6))
def test_a_ttl_expires_exactly_ttl_after_acceptance(
    now: datetime, ttl: float | None, default: float | None
) -> None:
    policy = DeliveryPolicy(default_ttl=default)
    deadline = expires_at(now, ttl, policy)
    chosen = ttl if ttl is not None else default
    if chosen is None:
        assert deadline is None
        return
    assert deadline is not None
    end = now + timedelta(seconds=chosen)
    assert not is_expired(deadline, now)
    assert not is_expired(deadline, end - timedelta(microseconds=1))
    assert is_expired(deadline, end)


# --- properties of plan ---------------------------------------------------------------------


@given(situations())
def test_terminal_commands_only_settle(situation: Situation) -> None:
    command, _, _, _, _ = situation
    action = plan(*situation)
    assert isinstance(action, Settle) == command.state.is_terminal


@given(situations())
def test_the_sweeper_does_nothing_before_a_command_is_due(situation: Situation) -> None:
    command, _, now, _, _ = situation
    if command.state.is_terminal or due(command, now):
        return
    assert plan(*situation[:4], Occasion.DUE) == Wait(command.due_at)


@given(situations())
def test_an_ending_is_a_legal_forward_move(situation: Situation) -> None:
    command = situation[0]
    action = plan(*situation)
    if isinstance(action, Expire | GiveUp | TimeOut):
        assert decide(command.state, action.state).applies
        assert action.error


@given(situations(st.sampled_from(UNDELIVERED)))
def test_an_expired_command_is_never_published_it_expires(situation: Situation) -> None:
    command, _, now, _, occasion = situation
    action = plan(*situation)
    if isinstance(action, Publish):
        assert not is_expired(command.expires_at, now)
    if is_expired(command.expires_at, now) and acts(command, now, occasion):
        assert action == Expire()


@given(situations(st.sampled_from(UNDELIVERED)))
def test_attempts_never_exceed_the_maximum(situation: Situation) -> None:
    command, _, _, policy, _ = situation
    action = plan(*situation)
    if isinstance(action, Publish):
        assert action.attempts == command.attempts + 1 <= policy.max_attempts
    if isinstance(action, GiveUp):
        assert command.attempts >= policy.max_attempts
        assert action.error == f"not received after {command.attempts} delivery attempts"


@given(situations(st.sampled_from(UNDELIVERED)))
def test_the_sweeper_publishes_only_to_an_online_device(situation: Situation) -> None:
    command, device, now, _, _ = situation
    action = plan(*situation[:4], Occasion.DUE)
    if not device.online:
        assert not isinstance(action, Publish | GiveUp)
        if due(command, now) and not is_expired(command.expires_at, now):
            assert action == Hold(command.expires_at)  # the device's broker session has it


@given(situations(st.sampled_from(UNDELIVERED), st.just(0), KNOWN_OFFLINE))
def test_a_command_held_for_an_offline_device_is_never_published(situation: Situation) -> None:
    """It never left the store: it stays here, where cancel and TTL are exact."""
    command, _, now, _, occasion = situation
    action = plan(*situation)
    assert not isinstance(action, Publish | GiveUp)
    if acts(command, now, occasion) and not is_expired(command.expires_at, now):
        assert action == Hold(command.expires_at)  # only the TTL can end it now


@given(situations(st.sampled_from(UNDELIVERED)))
@example(  # a device that never sent a status: its broker session is the only way to it
    (CommandView(S.QUEUED, 0), DeviceView(False, False), T0, POLICY, Occasion.HANDOFF)
)
def test_a_handoff_publishes_what_can_reach_the_device(situation: Situation) -> None:
    command, device, now, policy, _ = situation
    action = plan(*situation[:4], Occasion.HANDOFF)
    reachable = command.attempts > 0 or device.online or not device.status_seen
    fresh = not is_expired(command.expires_at, now)
    if reachable and fresh and command.attempts < policy.max_attempts:
        assert isinstance(action, Publish)


@given(situations(st.sampled_from(UNDELIVERED)), st.integers(0, 10**9))
def test_the_next_look_is_later_never_after_the_ttl_and_monotone(
    situation: Situation, step_us: int
) -> None:
    command, device, now, policy, occasion = situation
    first = plan(*situation)
    if not isinstance(first, Publish):
        return
    assert first.due_at is not None and first.due_at > format_time(now)  # progress
    assert first.due_at == earliest(later(now, policy.redelivery_after), command.expires_at)
    if command.expires_at is not None:
        assert first.due_at <= command.expires_at  # the TTL is looked at in time
    after = now + timedelta(microseconds=step_us)
    second = plan(command, device, after, policy, occasion)
    if isinstance(second, Publish):
        assert second.due_at is not None and second.due_at >= first.due_at


@given(situations(st.just(S.DELIVERED)))
@example(  # exactly at its execution deadline
    (
        CommandView(S.DELIVERED, 1, None, format_time(T0), format_time(at(300))),
        DeviceView(True, True),
        at(300),
        POLICY,
        Occasion.DUE,
    )
)
def test_a_delivered_command_only_waits_is_asked_again_or_times_out(
    situation: Situation,
) -> None:
    command, device, now, policy, occasion = situation
    action = plan(*situation)
    assert isinstance(action, Publish | Wait | TimeOut)  # never expired nor given up: it ran
    assert command.delivered_at is not None
    deadline = execution_deadline(command.delivered_at, policy)
    if isinstance(action, Publish):
        assert action.attempts == command.attempts + 1  # asking is counted, never capped
    if occasion is Occasion.HANDOFF:
        assert action == Publish(command.attempts + 1, command.due_at)  # deadline unmoved
    elif due(command, now):
        if deadline <= format_time(now):
            assert isinstance(action, TimeOut)
        else:
            assert isinstance(action, Publish if device.online else Wait)
            next_look = action.due_at if isinstance(action, Publish) else action.until
            assert next_look is not None and format_time(now) < next_look <= deadline


@given(policies, moments, st.none() | st.floats(1, 10**5), st.booleans())
def test_a_command_nobody_answers_ends_after_exactly_max_attempts_or_at_its_ttl(
    policy: DeliveryPolicy, start: datetime, ttl: float | None, unknown_presence: bool
) -> None:
    """Carry the plans out on the view, as the store does, with an online device that never
    says ``received``: it is published at most ``max_attempts`` times, then ends."""
    device = DeviceView(online=True, status_seen=not unknown_presence)
    command = CommandView(S.QUEUED, 0, expires_at(start, ttl, policy))
    action: Action = plan(command, device, start, policy, Occasion.HANDOFF)
    now, publishes = start, 0
    for _ in range(policy.max_attempts + 2):
        if not isinstance(action, Publish):
            break
        publishes += 1
        command = command._replace(attempts=action.attempts, due_at=action.due_at)
        assert command.due_at is not None
        now = datetime.fromisoformat(command.due_at)  # the sweeper comes when it is due
        action = plan(command, device, now, policy, Occasion.DUE)
    assert publishes <= policy.max_attempts
    if isinstance(action, GiveUp):
        assert publishes == policy.max_attempts
    else:
        assert action == Expire() and is_expired(command.expires_at, now)


# --- the store carries the one plan out (real SQLite) ---------------------------------------


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    store = ShardedStore(tmp_path, 2)
    yield Harness(store)
    store.close()


def test_a_bridge_reconnect_expires_what_expired_instead_of_publishing_it(h: Harness) -> None:
    """After the bridge reconnects, an expired undelivered command ends ``expired`` at once:
    not counted as one more attempt (the publish path would drop it anyway), nor, with its
    attempts used up, ended as ``undeliverable``."""
    h.online(True)
    stale = h.accept(0, ttl=65).record["id"]  # attempt 1
    h.sweep(30)  # attempt 2
    fresh = h.accept(50).record["id"]
    h.sweep(60)  # stale: attempt 3 of 3, due again at its TTL
    again = h.store.write("dev", lambda tx: jobs.redeliver_online(tx, at(65), POLICY)).result()
    assert [d.id for d in again] == [fresh]
    record = h.get(stale)
    assert (record["state"], record["attempts"], record["ended_by"]) == ("expired", 3, "tether")
    assert h.get(fresh)["attempts"] == 2


def test_a_ttl_that_is_already_over_ends_the_command_at_acceptance(h: Harness) -> None:
    h.online(True)
    accepted = h.accept(0, ttl=0)
    assert accepted.delivery is None
    assert (accepted.record["state"], accepted.record["attempts"]) == ("expired", 0)
    assert h.get(accepted.record["id"])["ended_by"] == "tether"
