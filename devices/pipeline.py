"""Carries out the plans of :mod:`devices.core` against a journal and an ack sender.

The same pipeline serves the threaded agent and the asyncio simulator: neither knows the rules,
both only move bytes and run handlers. Every method returns once the journal write it needs is
durable, so the caller may then let the broker consider the MQTT message delivered (PUBACK).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devices.core import (
    Lookup,
    Plan,
    Step,
    outcome_ack,
    plan_cancel_notice,
    plan_command,
    plan_recovery,
    read_command,
    received_ack,
)
from devices.journal import Journal
from tether.protocol import AckMessage, CancelNotice

log = logging.getLogger(__name__)

SendAck = Callable[[AckMessage], None]
Settle = Callable[[], object]


def _nothing() -> None:
    pass


def utc_clock() -> datetime:
    return datetime.now(UTC)


class CommandPipeline:
    def __init__(
        self,
        journal: Journal,
        lookup: Lookup,
        send_ack: SendAck,
        *,
        clock: Callable[[], datetime] = utc_clock,
        device_id: str = "",
    ) -> None:
        self.journal = journal
        self.lookup = lookup
        self.send_ack = send_ack
        self.clock = clock
        self.device_id = device_id

    def accept(self, raw: bytes | bytearray, settle: Settle = _nothing) -> Plan:
        """Decide what a ``cmd`` payload means, record it and answer what can be answered now.

        ``settle`` is called once the command is durable in the journal (or needs no record),
        before any ack is sent: that is where the caller PUBACKs the MQTT message, so the broker
        has its PUBACK before anyone can see ``received`` (same connection, same order). If the
        journal write fails, ``settle`` is not called and the error propagates.

        A ``RUN`` plan comes back recorded and with ``received`` sent: run its handler, then call
        :meth:`complete`. Every other plan is already fully handled.
        """
        incoming = read_command(raw)
        stored = self.journal.get(incoming.command_id) if incoming.command_id else None
        plan = plan_command(incoming, stored, self.lookup, self.clock())
        self._carry_out(plan, settle)
        return plan

    def cancel(self, notice: CancelNotice, settle: Settle = _nothing) -> Plan:
        """A cancel notice (:func:`devices.core.plan_cancel_notice`), recorded before ``settle``
        like a command, so a crash cannot forget it."""
        stored = self.journal.get(notice.id)
        plan = plan_cancel_notice(notice, stored, self.clock())
        self._carry_out(plan, settle)
        return plan

    def complete(
        self, plan: Plan, *, result: Any = None, error: BaseException | None = None
    ) -> AckMessage:
        """Record and send the final ack of a ``RUN`` plan whose handler returned or raised."""
        assert plan.step is Step.RUN and plan.command is not None
        ack = outcome_ack(plan.command.id, self.clock(), result=result, error=error)
        self.journal.record_final(ack, plan.command.name)
        self.send_ack(ack)
        return ack

    def recover(self) -> list[Plan]:
        """After a (re)start: re-send final acks the broker never confirmed, then settle every
        command that was received but never finished. Returns the ``RUN`` plans (idempotent
        handlers) to run again, oldest first, before any new command."""
        for entry in self.journal.unconfirmed():
            assert entry.final is not None
            log.info(
                "%s: re-sending unconfirmed %s ack of %s",
                self.device_id,
                entry.final.status,
                entry.command_id,
            )
            self.send_ack(entry.final)
        reruns = []
        for entry in self.journal.unfinished():
            plan = plan_recovery(entry, self.lookup, self.clock())
            if plan.step is Step.RUN:
                log.warning(
                    "%s: command %s (%s) was interrupted; its handler is idempotent, "
                    "running it again",
                    self.device_id,
                    entry.command_id,
                    entry.name,
                )
                reruns.append(plan)
            else:
                log.warning(
                    "%s: command %s (%s) was interrupted by a crash; reporting it failed",
                    self.device_id,
                    entry.command_id,
                    entry.name,
                )
                self._carry_out(plan)
        return reruns

    def _carry_out(self, plan: Plan, settle: Settle = _nothing) -> None:
        if plan.step is Step.FINISH:
            assert plan.ack is not None
            self.journal.record_final(plan.ack, plan.command.name if plan.command else "")
        elif plan.step is Step.RUN:
            assert plan.command is not None
            self.journal.record_received(plan.command)
        settle()
        if plan.step is Step.IGNORE:
            log.warning("%s: ignoring a command payload: %s", self.device_id, plan.reason)
        elif plan.step is Step.PENDING:
            log.info(
                "%s: command %s delivered again while it runs", self.device_id, plan.command_id
            )
        elif plan.step is Step.RESEND:
            assert plan.ack is not None
            log.info(
                "%s: command %s seen before: re-sending its %s ack, not running it",
                self.device_id,
                plan.command_id,
                plan.ack.status,
            )
            self.send_ack(plan.ack)
        elif plan.step is Step.FINISH:
            assert plan.ack is not None
            log.info(
                "%s: command %s %s: %s",
                self.device_id,
                plan.command_id,
                plan.ack.status,
                plan.reason,
            )
            self.send_ack(plan.ack)
        else:
            assert plan.command is not None
            self.send_ack(received_ack(plan.command.id, self.clock()))
