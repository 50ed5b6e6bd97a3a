"""What a terminal state promises, and what the device may still say afterwards. No IO here.

A record must never say "did not run" about a command that ran. Two rules carry that:

- :func:`plan_cancel`: what an operator's cancel can promise in each state. A command that never
  left the store (``attempts == 0``: held while its device was offline) is cancelled exactly. One
  the broker or the device may hold is cancelled here, but only *requested* there: Tether stops
  redelivering it, and a device that advertises the ``cancel`` feature gets a cancel notice.
- :func:`is_late`: an ack that arrives after a command is final is kept on the record (``late``)
  unless the final state already is what the device said. States still only move forward.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

from tether.protocol.states import CommandState

S = CommandState

#: The ``features`` a device's ``status`` may advertise.
FEATURE_CANCEL = "cancel"


class EndedBy(enum.StrEnum):
    """Who set a command's terminal state."""

    DEVICE = "device"  # its final ack
    OPERATOR = "operator"  # a cancel
    TETHER = "tether"  # the delivery policy: TTL, attempts, execution timeout, revoke


class CancelMode(enum.StrEnum):
    DONE = "done"  # it never left the store: it will not run
    REQUESTED = "requested"  # the broker or the device may hold it: it may still run


@dataclass(frozen=True, slots=True)
class CancelPlan:
    mode: CancelMode | None  # None: refused
    notify_device: bool = False
    reason: str = ""

    @property
    def applies(self) -> bool:
        return self.mode is not None


def plan_cancel(state: CommandState, attempts: int, features: Collection[str]) -> CancelPlan:
    """What an operator's cancel does to a command in ``state`` published ``attempts`` times to
    a device advertising ``features``."""
    if state.is_terminal:
        return CancelPlan(None, reason=f"command is already {state.value}: too late to cancel")
    if state is S.DELIVERED:
        return CancelPlan(
            None, reason="command is already delivered: the device has it and may be running it"
        )
    if attempts == 0:
        return CancelPlan(CancelMode.DONE)
    return CancelPlan(CancelMode.REQUESTED, notify_device=FEATURE_CANCEL in features)


def is_late(
    state: CommandState,
    ended_by: EndedBy | None,
    delivered: bool,
    late_is_final: bool,
    reported: CommandState,
) -> bool:
    """Should a device's report of ``reported`` on a command already in terminal ``state`` be
    kept as its late outcome?

    Only where it adds a fact: a state the device itself set is only repeated; a ``received``
    matters only if the device had never said it; a final report is not replaced by a later one,
    nor by a ``received`` overtaken by it."""
    if not state.is_terminal or ended_by is EndedBy.DEVICE:
        return False
    if reported is S.DELIVERED:
        return not delivered and not late_is_final
    return not late_is_final
