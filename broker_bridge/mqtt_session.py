"""The bridge's one MQTT session, owning its paho client.

Owning paho (rather than going through aiomqtt) gives the bridge manual acknowledgement: an
incoming ack is PUBACKed only after the store committed it, so a bridge killed in between gets
the message again from its persistent session. The broker never has more than
``receive_maximum`` unacknowledged messages out to us, which bounds the work queued in memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tether.netutil import set_tcp_nodelay
from tether.paho_tuning import share_property_tables

log = logging.getLogger(__name__)

WEEK = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class SessionSettings:
    host: str
    port: int
    username: str
    password: str
    client_id: str = "tether-bridge"
    keepalive: int = 25
    session_expiry: int = WEEK
    receive_maximum: int = 1000
    max_inflight: int = 1000


class MqttSession:
    """Connect once; paho reconnects by itself. Callbacks run on paho's network thread."""

    def __init__(
        self,
        settings: SessionSettings,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[mqtt.MQTTMessage], None],
        on_connected: Callable[[bool], None] = lambda session_present: None,
    ) -> None:
        self.settings = settings
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_connected = on_connected
        self.connected = threading.Event()
        self._first_connack: Future[ReasonCode] = Future()
        self._lock = threading.Lock()
        self._publishes: dict[int, Future[None]] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        share_property_tables()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(settings.username, settings.password)
        client.max_inflight_messages_set(settings.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_socket_open = lambda _c, _u, sock: set_tcp_nodelay(sock)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        self._client = client

    def start(self, timeout: float = 10.0) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = self.settings.receive_maximum
        self._client.connect_async(
            self.settings.host,
            self.settings.port,
            keepalive=self.settings.keepalive,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        try:
            reason = self._first_connack.result(timeout)
        except TimeoutError:
            self.stop()
            raise ConnectionError(
                f"no answer from the MQTT broker at {self.settings.host}:{self.settings.port}"
            ) from None
        if reason.is_failure:
            self.stop()
            raise ConnectionError(f"the MQTT broker refused the bridge: {reason}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(
        self, topic: str, payload: bytes, properties: Properties | None = None
    ) -> Future[None]:
        """Queue a QoS 1 publish; the future resolves on the broker's PUBACK (maybe after a
        reconnect: paho keeps unacknowledged messages and sends them again)."""
        done: Future[None] = Future()
        # Never hold our lock while calling into paho: paho calls on_publish holding its own
        # mutex, and on_publish takes our lock. A PUBACK may beat the registration below, so
        # on_publish parks early ones in _early_acks.
        info = self._client.publish(topic, payload, qos=1, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            done.set_exception(ConnectionError(mqtt.error_string(info.rc)))
            return done
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._publishes[info.mid] = done
        if early is not None:
            _settle(done, early)
        return done

    def ack(self, message: mqtt.MQTTMessage) -> None:
        """PUBACK an incoming message: call once what it carried is safely stored."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # paho callbacks, on the network thread

    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if not self._first_connack.done():
            self._first_connack.set_result(reason)
        if reason.is_failure:
            log.error("broker refused the bridge: %s", reason)
            return
        session_present = bool(getattr(flags, "session_present", False))
        log.info("bridge connected (session present: %s)", session_present)
        if self._subscriptions:
            client.subscribe([(topic, qos) for topic, qos in self._subscriptions])
        self.connected.set()
        self._on_connected(session_present)

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connected.clear()
        log.warning("bridge disconnected from the broker: %s", reason)

    def _handle_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        try:
            self._on_message(message)
        except Exception:
            log.exception("bridge failed on a message for %s; acknowledging it", message.topic)
            self.ack(message)

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        with self._lock:
            done = self._publishes.pop(mid, None)
            if done is None:
                self._early_acks[mid] = reason
                return
        _settle(done, reason)


def _settle(done: Future[None], reason: ReasonCode) -> None:
    if reason.is_failure:
        done.set_exception(ConnectionError(f"broker refused the publish: {reason}"))
    else:
        done.set_result(None)
