"""Everything a shard owner publishes: commands, cancel notices, cleared statuses, each commit's
events for the gateways, and answers to the gateways' requests.

Runs on whichever thread calls it; paho queues the packets and the session's I/O thread sends
them. A command's PUBACK moves it to ``sent`` (a store job, committed on that thread too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker_bridge.counters import Counters
from broker_bridge.delivery import seconds_left
from broker_bridge.mqtt_session import MqttSession
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from broker_bridge.store_retry import StoreRetry
from tether.protocol import (
    CancelNotice,
    CommandMessage,
    CommandState,
    Topics,
    format_time,
)
from tether.protocol.internal import Answer, InternalTopics, encode_events
from tether.protocol.service import StoredEvent

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def log_failure(what: object, error: BaseException | None) -> None:
    if error is not None:
        log.warning("publish for %s failed: %s", what, error)


class Outbound:
    def __init__(
        self,
        session: MqttSession,
        store: ShardedStore,
        topics: Topics,
        internal: InternalTopics,
        policy: DeliveryPolicy,
        counters: Counters,
        retry: StoreRetry,
    ) -> None:
        self.session = session
        self.retry = retry
        self.store = store
        self.topics = topics
        self.internal = internal
        self.policy = policy
        self.counters = counters

    # commands to devices

    def deliver(self, delivery: jobs.Delivery) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        props.ResponseTopic = self.topics.ack(delivery.device_id)
        props.CorrelationData = delivery.id.encode()
        left = seconds_left(delivery.expires_at, _now())
        if left is not None:
            if left <= 0:
                return  # the sweeper ends it as expired
            props.MessageExpiryInterval = max(1, int(left))
        message = CommandMessage(
            delivery.id, delivery.name, delivery.issued_at, delivery.args, delivery.expires_at
        )
        self.counters.count("published")
        self.session.publish(
            self.topics.cmd(delivery.device_id),
            message.encode(),
            props,
            partial(self._on_puback, delivery),
        )

    def deliver_all(self, deliveries: list[jobs.Delivery]) -> None:
        for delivery in deliveries:
            self.deliver(delivery)

    def _on_puback(self, delivery: jobs.Delivery, error: BaseException | None) -> None:
        if error is not None:
            log.warning("publish of %s failed: %s", delivery.id, error)
            return  # still due: the sweeper publishes it again
        self.retry.write(
            delivery.device_id,
            lambda tx: jobs.transition(
                tx, delivery.id, CommandState.SENT, _now(), policy=self.policy
            ),
        )

    def cancel_notice(self, device_id: str, command_id: str) -> None:
        """Tell a device that can honour it (``features: ["cancel"]``) that a command it may
        hold was cancelled; what it answers is kept on the record."""
        self.counters.count("cancel_notices")
        notice = CancelNotice(command_id, format_time(_now()))
        self.session.publish(
            self.topics.cmd(device_id), notice.encode(), None, partial(log_failure, notice)
        )

    def clear_status(self, device_id: str) -> None:
        """A login was replaced or revoked: the broker must not replay an old ``online``."""
        self.session.publish(
            self.topics.status(device_id),
            b"",
            None,
            partial(log_failure, device_id),
            retain=True,
        )

    # to the gateways

    def events(self, events: list[StoredEvent]) -> None:
        """Store listener (the committing thread, after commit): each shard's part of the
        commit on its events topic, in commit order. QoS 0: a gateway that misses one reads it
        from the shard (see :mod:`broker_bridge.live_feed`), so no PUBACK is worth its cost."""
        by_shard: dict[int, list[StoredEvent]] = {}
        for event in events:
            by_shard.setdefault(event.shard, []).append(event)
        for shard, part in by_shard.items():
            for payload in encode_events(part):
                self.session.publish(
                    self.internal.events(shard), payload, None, _events_failed, qos=0
                )

    def answer(self, response_topic: str, correlation: bytes, answer: Answer) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = correlation
        self.session.publish(
            response_topic, answer.encode(), props, partial(log_failure, response_topic)
        )

    def owner_status(
        self, status: dict[str, Any], then: Callable[[BaseException | None], None]
    ) -> None:
        self.session.publish(
            self.internal.owner(status["group"]),
            json.dumps(status, separators=(",", ":")).encode(),
            None,
            then,
            retain=True,
        )


def _events_failed(error: BaseException | None) -> None:
    if error is not None:  # gateways repair the gap from the store
        log.warning("publishing events failed: %s", error)
