"""The command state machine: forward-only, with one terminal state per command.

``queued → sent → delivered → {succeeded, failed, rejected, expired, cancelled, undeliverable,
timed_out}``. Acks can arrive twice, late or out of order, so :func:`decide` never raises for a
backwards or repeated move: it says what to do, and the caller records or ignores it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CommandState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNDELIVERABLE = "undeliverable"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def rank(self) -> int:
        return _RANK[self]


TERMINAL_STATES = frozenset(
    {
        CommandState.SUCCEEDED,
        CommandState.FAILED,
        CommandState.REJECTED,
        CommandState.EXPIRED,
        CommandState.CANCELLED,
        CommandState.UNDELIVERABLE,
        CommandState.TIMED_OUT,
    }
)
PENDING_STATES = frozenset(set(CommandState) - TERMINAL_STATES)

_RANK = {
    CommandState.QUEUED: 0,
    CommandState.SENT: 1,
    CommandState.DELIVERED: 2,
    **{state: 3 for state in TERMINAL_STATES},
}

_BEFORE_DELIVERY = frozenset({CommandState.QUEUED, CommandState.SENT})
_ANY_PENDING = PENDING_STATES

# Which states each target may be entered from. Device outcomes may skip hops (a final ack can
# overtake its PUBACK or its `received`), operator and policy outcomes may not.
ALLOWED_SOURCES: dict[CommandState, frozenset[CommandState]] = {
    CommandState.QUEUED: frozenset(),
    CommandState.SENT: frozenset({CommandState.QUEUED}),
    CommandState.DELIVERED: _BEFORE_DELIVERY,
    CommandState.SUCCEEDED: _ANY_PENDING,
    CommandState.FAILED: _ANY_PENDING,
    CommandState.REJECTED: _ANY_PENDING,
    CommandState.EXPIRED: _ANY_PENDING,
    CommandState.CANCELLED: _BEFORE_DELIVERY,
    CommandState.UNDELIVERABLE: _BEFORE_DELIVERY,
    CommandState.TIMED_OUT: frozenset({CommandState.DELIVERED}),
}


class Verdict(enum.StrEnum):
    APPLY = "apply"  # record the transition
    DUPLICATE = "duplicate"  # already in that state: nothing to do
    STALE = "stale"  # the command is already past it (late or out-of-order input)
    FINISHED = "finished"  # the command already has a (different) terminal state
    REFUSED = "refused"  # not a legal move from here, e.g. cancel after delivery


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    current: CommandState
    target: CommandState

    @property
    def applies(self) -> bool:
        return self.verdict is Verdict.APPLY


def decide(current: CommandState, target: CommandState) -> Decision:
    """What moving a command from ``current`` to ``target`` means. Never moves backwards."""
    if current == target:
        verdict = Verdict.DUPLICATE
    elif current.is_terminal:
        verdict = Verdict.FINISHED
    elif current in ALLOWED_SOURCES[target]:
        verdict = Verdict.APPLY
    elif target.rank <= current.rank:
        verdict = Verdict.STALE
    else:
        verdict = Verdict.REFUSED
    return Decision(verdict, current, target)


def can_transition(current: CommandState, target: CommandState) -> bool:
    return decide(current, target).applies
