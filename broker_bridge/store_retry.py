"""Store a change from a device message, retrying while the store refuses; then PUBACK it.

The message stays unacknowledged until its change is committed, so the broker redelivers it
if this process dies in between: nothing a device reported is lost to a full disk or a
locked file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import paho.mqtt.client as mqtt

from broker_bridge.counters import Counters
from broker_bridge.mqtt_session import MqttSession
from broker_bridge.store.shard import StoreUnavailable
from broker_bridge.store.sharded import ShardedStore

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreRetry:
    def __init__(
        self,
        store: ShardedStore,
        session: MqttSession,
        counters: Counters,
        delay: float,
        stopping: threading.Event,
    ) -> None:
        self.store = store
        self.session = session
        self.counters = counters
        self.delay = delay
        self.stopping = stopping

    def write(
        self,
        device_id: str,
        fn: Callable[[Any], T],
        message: mqtt.MQTTMessage | None = None,
        then: Callable[[T], None] | None = None,
    ) -> None:
        """Store ``fn``'s change, then PUBACK ``message``. If the store refuses, retry later:
        the message stays unacknowledged (the broker redelivers it if we die meanwhile)."""

        def done(value: T, error: BaseException | None) -> None:
            if isinstance(error, StoreUnavailable):
                self.counters.count("store_retries")
                if not self.stopping.is_set():
                    timer = threading.Timer(self.delay, self.write, (device_id, fn, message, then))
                    timer.daemon = True
                    timer.start()
                return
            if error is not None:
                log.error("storing a message from %s failed: %r", device_id, error)
                self.counters.count("store_errors")
            elif then is not None:
                then(value)
            if message is not None:
                self.session.ack(message)

        self.store.write_then(device_id, fn, done)
