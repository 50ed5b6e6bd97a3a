"""A blocking paho client for tests: every wait is on a condition, with an absolute timeout."""

from __future__ import annotations

import queue
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tether.netutil import set_tcp_nodelay

TIMEOUT = 10.0
WEEK = 7 * 24 * 3600


class ProbeClient:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: int = mqtt.MQTTv5,
        persistent: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.protocol = protocol
        self.persistent = persistent
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"probe-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=(not persistent) if protocol != mqtt.MQTTv5 else None,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.session_present = False
        self._connack_event = threading.Event()
        self._disconnected = threading.Event()
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._suback_cv = threading.Condition()
        self.client.on_socket_open = lambda _c, _u, sock: set_tcp_nodelay(sock)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)

    # connection

    def connect(self) -> ReasonCode:
        """Connect and wait for the CONNACK; returns its reason code (check ``is_failure``)."""
        self._connack_event.clear()
        self._disconnected.clear()
        props = None
        kwargs: dict[str, Any] = {}
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = WEEK if self.persistent else 0
            kwargs["clean_start"] = not self.persistent
        self.client.reconnect_delay_set(
            60, 120
        )  # tests reconnect explicitly, never behind our back
        self.client.connect(self.host, self.port, keepalive=20, properties=props, **kwargs)
        self.client.loop_start()
        if not self._connack_event.wait(TIMEOUT):
            raise TimeoutError("no CONNACK")
        assert self.connack is not None
        if self.connack.is_failure:
            self.client.loop_stop()
        return self.connack

    def connect_ok(self) -> ProbeClient:
        reason = self.connect()
        assert not reason.is_failure, f"connect refused: {reason}"
        return self

    def disconnect(self) -> None:
        self.client.disconnect()
        self._disconnected.wait(TIMEOUT)
        self.client.loop_stop()

    def wait_disconnected(self, timeout: float = TIMEOUT) -> bool:
        return self._disconnected.wait(timeout)

    # traffic

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        result, mid = self.client.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(result)
        with self._suback_cv:
            if not self._suback_cv.wait_for(lambda: mid in self._subacks, TIMEOUT):
                raise TimeoutError(f"no SUBACK for {topic}")
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and, at QoS 1, wait for the PUBACK."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"no PUBACK for {topic}"

    def next_message(self, timeout: float = TIMEOUT) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=timeout)

    def drain(self) -> list[mqtt.MQTTMessage]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    # callbacks

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connack = reason
        self.session_present = bool(getattr(flags, "session_present", False))
        self._connack_event.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._disconnected.set()
        if not self._connack_event.is_set():
            # Refused before a CONNACK reached us (MQTT 3.1.1 refusals arrive this way too).
            self.connack = reason if isinstance(reason, ReasonCode) else None
            self._connack_event.set()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        with self._suback_cv:
            self._subacks[mid] = list(reasons)
            self._suback_cv.notify_all()
