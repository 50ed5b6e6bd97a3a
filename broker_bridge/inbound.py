"""What devices report (acks, statuses, events), into the store; on the session's I/O thread.

Each message is PUBACKed only once what it carried is committed (see
:class:`broker_bridge.store_retry.StoreRetry`), so nothing a device said is lost if the worker
dies in between: its group's persistent session gets the message again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from broker_bridge.counters import Counters
from broker_bridge.mqtt_session import MqttSession
from broker_bridge.outbound import Outbound
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from broker_bridge.store_retry import StoreRetry
from tether.protocol import (
    Channel,
    ProtocolError,
    Topics,
    decode_ack,
    decode_event,
    decode_status,
)

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class Inbound:
    def __init__(
        self,
        session: MqttSession,
        store: ShardedStore,
        topics: Topics,
        policy: DeliveryPolicy,
        counters: Counters,
        retry: StoreRetry,
        outbound: Outbound,
    ) -> None:
        self.session = session
        self.store = store
        self.topics = topics
        self.policy = policy
        self.counters = counters
        self.retry = retry
        self.outbound = outbound

    def device_message(self, message: mqtt.MQTTMessage) -> None:
        try:
            ref = self.topics.parse(message.topic)
        except ProtocolError:
            self.counters.count("ignored_topic")
            self.session.ack(message)
            return
        if self.store.shard_of(ref.device_id) not in self.store.writers:
            self.counters.count("not_owned")  # a subscription left from another layout
            self.session.ack(message)
            return
        try:
            if ref.channel is Channel.ACK:
                self._ack(ref.device_id, message)
            elif ref.channel is Channel.STATUS:
                self._status(ref.device_id, message)
            elif ref.channel is Channel.EVT:
                self._event(ref.device_id, message)
            else:
                self.session.ack(message)
        except ProtocolError as exc:
            log.warning("malformed %s from %s: %s", ref.channel.value, ref.device_id, exc)
            self.counters.count(f"malformed_{ref.channel.value}")
            self.session.ack(message)  # redelivery cannot mend it

    def _ack(self, device_id: str, message: mqtt.MQTTMessage) -> None:
        ack = decode_ack(message.payload)

        def apply(tx: Any) -> jobs.Transition:
            return jobs.record_ack(tx, device_id, ack, _now(), self.policy)

        def done(outcome: jobs.Transition) -> None:
            if outcome.verdict is None:
                self.counters.count("ignored_ack")
                log.info("ignored ack from %s for %s: %s", device_id, ack.id, outcome.reason)
            elif outcome.late:
                self.counters.count("late_outcomes")
                log.info(
                    "late %s from %s for %s, kept on the record", ack.status, device_id, ack.id
                )
            elif not outcome.applied:
                self.counters.count(f"ack_{outcome.verdict.value}")

        self.retry.write(device_id, apply, message, done)

    def _status(self, device_id: str, message: mqtt.MQTTMessage) -> None:
        if not message.payload:  # a cleared retained status: nothing to record
            self.session.ack(message)
            return
        status = decode_status(message.payload)

        def done(change: jobs.PresenceChange) -> None:
            if not change.known:
                self.counters.count("ignored_status")
            elif change.came_online:
                redeliver = self.store.write(
                    device_id, lambda tx: jobs.redeliver_device(tx, device_id, _now(), self.policy)
                )
                redeliver.add_done_callback(
                    lambda f: self.outbound.deliver_all(f.result()) if not f.exception() else None
                )

        self.retry.write(
            device_id,
            lambda tx: jobs.update_presence(
                tx,
                device_id,
                status.online,
                status.agent,
                _now(),
                fresh_connect=status.online and not message.retain,
                live=not message.retain,
                features=status.features,
            ),
            message,
            done,
        )

    def _event(self, device_id: str, message: mqtt.MQTTMessage) -> None:
        event = decode_event(message.payload)

        def done(known: bool) -> None:
            if not known:
                self.counters.count("ignored_event")

        self.retry.write(
            device_id,
            lambda tx: jobs.record_device_event(
                tx, device_id, event.name, event.data, event.at, _now()
            ),
            message,
            done,
        )
