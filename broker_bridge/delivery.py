"""What the delivery policy does with one command, decided without any IO.

Given what the store holds of a command and of its device, the time and the
:class:`~broker_bridge.policy.DeliveryPolicy`, :func:`plan` says which one thing happens to it
now: publish it (counting an attempt), hold it for a device known to be offline, wait, or end it
as ``expired``, ``undeliverable`` or ``timed_out``. The store's jobs
(:mod:`broker_bridge.store.jobs`) read the rows, ask :func:`plan` and carry the answer out with
one UPDATE, or one transition. Every rule lives here, once, so it can be property-tested without
SQLite (``tests/test_delivery_plan.py``), as :mod:`devices.core` does for the device's side.

Times are RFC 3339 strings as :func:`tether.protocol.format_time` writes them (they sort as
times), the same strings the store keeps, so a decision compares exactly what is stored.

A plan happens on one of two occasions:

- :attr:`Occasion.HANDOFF`: a moment to hand commands to the broker, whatever they are due:
  the command was just accepted, its device came (back) online, or the bridge (re)connected or
  started, after which the broker may have lost what it held. A command that never left the
  store (no attempt yet) is held while its device is known to be offline: cancel and TTL are
  exact while it waits here. One that did leave is published again: the broker may have lost it.
- :attr:`Occasion.DUE`: its ``due_at`` came, and the sweeper looks at it. It is published again
  only while its device is online: an offline device's broker session holds what was published,
  and the device's return is a handoff. Until then only the TTL (or the execution timeout) ends it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, NamedTuple

from broker_bridge.policy import DeliveryPolicy
from tether.protocol import CommandState, format_time, parse_time

S = CommandState
UNDELIVERED = frozenset({S.QUEUED, S.SENT})


# --- time: the expiry rule and the next looks -----------------------------------------------


def later(now: datetime, seconds: float) -> str:
    return format_time(now + timedelta(seconds=seconds))


def earliest(*values: str | None) -> str | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def expires_at(now: datetime, ttl: float | None, policy: DeliveryPolicy) -> str | None:
    """When a command accepted at ``now`` with ``ttl`` (None: the policy's default) expires."""
    chosen = ttl if ttl is not None else policy.default_ttl
    return later(now, chosen) if chosen is not None else None


def is_expired(expires_at: str | None, now: datetime) -> bool:
    """The expiry rule, the only copy: a command expires at its ``expires_at``, inclusive."""
    return expires_at is not None and expires_at <= format_time(now)


def seconds_left(expires_at: str | None, now: datetime) -> float | None:
    """Seconds before ``expires_at`` (None: it never expires), for MQTT 5's Message Expiry
    Interval; ≤ 0 exactly when :func:`is_expired` says so."""
    return None if expires_at is None else (parse_time(expires_at) - now).total_seconds()


def delivered_due(now: datetime, policy: DeliveryPolicy) -> str:
    """When to look first at a command delivered at ``now``: to ask again for a final ack the
    broker may have dropped, or to end it at its execution timeout, whichever comes first."""
    return later(now, min(policy.redelivery_after, policy.execution_timeout))


def execution_deadline(delivered_at: str, policy: DeliveryPolicy) -> str:
    return later(parse_time(delivered_at), policy.execution_timeout)


# --- what the plan looks at -----------------------------------------------------------------


# The two inputs are named tuples, not frozen dataclasses: as immutable, and built several
# times faster, which the acceptance of every command pays (bench/store_transitions.py).


class CommandView(NamedTuple):
    """What the store holds of a command that the policy needs."""

    state: CommandState
    attempts: int  # publishes so far; 0: it never left the store
    expires_at: str | None = None
    delivered_at: str | None = None  # set once ``delivered``
    due_at: str | None = None  # when the policy looks at it next; None: only at a handoff


class DeviceView(NamedTuple):
    online: bool
    status_seen: bool  # it ever sent a status; before that its presence is unknown

    @property
    def known_offline(self) -> bool:
        return self.status_seen and not self.online


class Occasion(enum.StrEnum):
    HANDOFF = "handoff"  # accepted, device back online, bridge (re)connected or started
    DUE = "due"  # the sweeper: its due_at came


# --- what the plan says ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Hand it to the broker (again): it is attempt number ``attempts``; look again at
    ``due_at``. A ``delivered`` command is published again only to ask for its final ack: the
    device re-sends its stored ack, or ignores the repeat while it still runs it."""

    attempts: int
    due_at: str | None


@dataclass(frozen=True, slots=True)
class Hold:
    """Not published: its device is offline. Its return (a handoff) sends it; until then only
    the TTL can end it, so the next look is at ``until`` (``expires_at``, or never)."""

    until: str | None


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do now; look again at ``until`` (None: not before a handoff)."""

    until: str | None


@dataclass(frozen=True, slots=True)
class Settle:
    """It is final: nothing is due for it ever again."""


@dataclass(frozen=True, slots=True)
class Expire:
    """Its TTL passed before the device said ``received``."""

    state: ClassVar[CommandState] = S.EXPIRED
    error: str = "expired before delivery"


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Every delivery attempt is used up, and the device never said ``received``."""

    state: ClassVar[CommandState] = S.UNDELIVERABLE
    error: str = ""


@dataclass(frozen=True, slots=True)
class TimeOut:
    """Delivered, but no final ack within the execution timeout."""

    state: ClassVar[CommandState] = S.TIMED_OUT
    error: str = ""


End = Expire | GiveUp | TimeOut
Action = Publish | Hold | Wait | Settle | End


def plan(
    command: CommandView,
    device: DeviceView,
    now: datetime,
    policy: DeliveryPolicy,
    occasion: Occasion,
) -> Action:
    """What happens to ``command`` at ``now`` on ``occasion``. Never moves a command backwards:
    a final one only settles, and only an undelivered one can expire or be given up.

    A ``delivered`` command is with the device. It is only asked again for its final ack, which
    the broker may have lost; asking is not capped by ``max_attempts`` and does not move the
    execution deadline, which the sweeper alone applies."""
    if command.state.is_terminal:
        return Settle()
    if occasion is Occasion.DUE and not _due(command, now):
        return Wait(command.due_at)
    if command.state is S.DELIVERED:
        if occasion is Occasion.HANDOFF:
            return Publish(command.attempts + 1, command.due_at)
        return _timeout_or_ask(command, device.online, now, policy)
    if is_expired(command.expires_at, now):
        return Expire()
    if not _reachable(command, device, occasion):
        return Hold(command.expires_at)
    if command.attempts >= policy.max_attempts:
        return GiveUp(f"not received after {command.attempts} delivery attempts")
    return Publish(
        command.attempts + 1, earliest(later(now, policy.redelivery_after), command.expires_at)
    )


def _due(command: CommandView, now: datetime) -> bool:
    return command.due_at is not None and command.due_at <= format_time(now)


def _reachable(command: CommandView, device: DeviceView, occasion: Occasion) -> bool:
    """Whether publishing now can reach the device (or its broker session)."""
    if occasion is Occasion.DUE:
        return device.online
    return command.attempts > 0 or not device.known_offline


def _timeout_or_ask(
    command: CommandView, online: bool, now: datetime, policy: DeliveryPolicy
) -> Action:
    """The sweeper at a delivered command: its execution deadline passed, or ask again while
    the device is online (a device still running it ignores the repeat)."""
    assert command.delivered_at is not None, "a delivered command has its delivered_at"
    deadline = execution_deadline(command.delivered_at, policy)
    if deadline <= format_time(now):
        return TimeOut(f"no final ack within {policy.execution_timeout:g} s of delivery")
    next_look = earliest(later(now, policy.redelivery_after), deadline)
    return Publish(command.attempts + 1, next_look) if online else Wait(next_look)
