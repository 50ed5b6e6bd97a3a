"""The bridge's one MQTT session: its paho client, driven by one I/O thread the bridge shares.

Owning paho (rather than going through aiomqtt) gives the bridge manual acknowledgement: an
incoming ack is PUBACKed only after the store committed it, so a bridge killed in between gets
the message again from its persistent session. The broker never has more than
``receive_maximum`` unacknowledged messages out to us, which bounds the work queued in memory.

The session runs paho as an external event loop (``loop_read``/``loop_write``/``loop_misc``
on a selector) in its own thread, and between reads that thread runs ``work``: the bridge
passes the store's commits, so receiving, committing and acknowledging happen on one thread.
With paho's own thread and a separate store writer, every message crossed threads four times
and the GIL handoffs cost more CPU than the work (``docs/benchmarks.md``). Other threads hand
work in through the store's queue and :meth:`wake`.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tether.netutil import set_tcp_nodelay
from tether.settings import setting

log = logging.getLogger(__name__)

WEEK = 7 * 24 * 3600
_MISC_INTERVAL = 1.0  # keepalive pings and timeouts: paho's loop_misc, at least this often
_SUBSCRIBE_BATCH = 500  # topic filters per SUBSCRIBE packet


@dataclass(frozen=True, slots=True)
class SessionSettings:
    host: str
    port: int
    username: str
    password: str
    client_id: str = setting(
        "tether-bridge", help="the bridge's MQTT client id; keep it stable across restarts"
    )
    keepalive: int = 25
    session_expiry: int = WEEK
    receive_maximum: int = 1000
    max_inflight: int = 1000
    reconnect_min_delay: float = 1.0
    reconnect_max_delay: float = 10.0


class MqttSession:
    """Connect once; reconnect by itself. Callbacks and ``work`` run on the session's thread."""

    def __init__(
        self,
        settings: SessionSettings,
        subscriptions: list[tuple[str, int]],
        on_message: Callable[[mqtt.MQTTMessage], None],
        on_connected: Callable[[bool], None] = lambda session_present: None,
        work: Callable[[], bool] = lambda: False,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        """``work``: called between network reads on the session's thread; returns whether it
        did anything (then the thread looks for more before it waits). ``will``: a retained
        (topic, payload) the broker publishes if this session dies without a DISCONNECT."""
        self.settings = settings
        self._subscriptions: dict[str, SubscribeOptions] = {
            topic: SubscribeOptions(qos=qos) for topic, qos in subscriptions
        }
        self._on_message = on_message
        self._on_connected = on_connected
        self.work = work
        self.connected = threading.Event()
        self._first_connack: Future[ReasonCode] = Future()
        self._lock = threading.Lock()
        self._publishes: dict[int, Callable[[BaseException | None], None]] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._woken = False  # a wake byte is in flight: no need to send another
        self._mqtt_sock: Any = None
        self._mqtt_events = 0
        self._stopping = threading.Event()
        self._stop_by = 0.0
        self._thread = threading.Thread(target=self._run, name="bridge-io", daemon=True)
        self._thread_id: int | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.username_pw_set(settings.username, settings.password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)
        client.max_inflight_messages_set(settings.max_inflight)
        client.max_queued_messages_set(0)
        client.on_socket_open = self._socket_opened
        client.on_socket_close = self._socket_closed
        client.on_socket_register_write = lambda _c, _u, _s: self.wake()
        client.on_socket_unregister_write = lambda _c, _u, _s: None
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
        self._thread.start()
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

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect cleanly (the DISCONNECT is flushed first), then end the thread."""
        self._client.disconnect()
        self._stop_by = time.monotonic() + timeout / 2  # then leave, DISCONNECT sent or not
        self._stopping.set()
        self.wake()
        if self._thread.ident is None:  # never started: nobody else closes these
            self._close_selector()
        elif threading.get_ident() != self._thread_id:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the bridge's I/O thread did not stop within %g s", timeout)

    def wake(self) -> None:
        """Make the session's thread look at its queues now (any thread may call this)."""
        if threading.get_ident() == self._thread_id or self._woken:
            return
        self._woken = True
        # OSError: the buffer is full of wake bytes already, or the session is closing.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def publish(
        self,
        topic: str,
        payload: bytes,
        properties: Properties | None,
        then: Callable[[BaseException | None], None],
        *,
        retain: bool = False,
        qos: int = 1,
    ) -> None:
        """Queue a QoS 1 publish; ``then(None)`` runs on the broker's PUBACK (maybe after a
        reconnect: paho keeps unacknowledged messages and sends them again), ``then(error)`` if
        paho refused it or the broker answered with a failure."""
        # Never hold our lock while calling into paho: paho calls on_publish holding its own
        # mutex, and on_publish takes our lock. A PUBACK may beat the registration below, so
        # on_publish parks early ones in _early_acks.
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            then(ConnectionError(mqtt.error_string(info.rc)))
            return
        if qos == 0:
            then(None)
            return
        with self._lock:
            early = self._early_acks.pop(info.mid, None)
            if early is None:
                self._publishes[info.mid] = then
        if early is not None:
            _settle(then, early)

    def subscribe(self, filters: list[tuple[str, SubscribeOptions]]) -> None:
        """Add subscriptions; kept, and made again on every connect (any thread may call)."""
        with self._lock:
            self._subscriptions.update(filters)
        if self.connected.is_set():
            self._send_subscribe(filters)

    def unsubscribe(self, topics: list[str]) -> None:
        with self._lock:
            for topic in topics:
                self._subscriptions.pop(topic, None)
        if self.connected.is_set() and topics:
            self._client.unsubscribe(topics)

    def _send_subscribe(self, filters: list[tuple[str, SubscribeOptions]]) -> None:
        for start in range(0, len(filters), _SUBSCRIBE_BATCH):
            self._client.subscribe(filters[start : start + _SUBSCRIBE_BATCH])

    def ack(self, message: mqtt.MQTTMessage) -> None:
        """PUBACK an incoming message: call once what it carried is safely stored."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # the session's thread

    def _run(self) -> None:
        self._thread_id = threading.get_ident()
        try:
            self._serve()
        finally:
            self._close_selector()

    def _close_selector(self) -> None:
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _serve(self) -> None:
        client = self._client
        next_misc = 0.0
        next_connect = 0.0  # when to try (again) to connect while there is no socket
        delay = self.settings.reconnect_min_delay
        while True:
            if self._stopping.is_set() and (
                self._mqtt_sock is None or time.monotonic() > self._stop_by
            ):
                break
            if self._mqtt_sock is None:
                now = time.monotonic()
                if now >= next_connect:
                    try:
                        client.reconnect()
                    except OSError as exc:
                        log.warning("bridge cannot reach the broker: %s", exc)
                    # Whether it worked or not, the next attempt waits: a connection that
                    # drops, or a CONNACK that refuses, must not make us hammer the broker.
                    next_connect = now + delay
                    delay = min(delay * 2, self.settings.reconnect_max_delay)
            if self.connected.is_set():
                delay = self.settings.reconnect_min_delay
            busy = self._safe_work()
            self._watch_writes()
            if busy:
                timeout = 0.0
            elif self._mqtt_sock is not None:
                timeout = max(0.0, next_misc - time.monotonic())
            else:
                timeout = max(0.0, min(next_connect - time.monotonic(), _MISC_INTERVAL))
            for key, mask in self._selector.select(timeout):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while self._wake_r.recv(4096):
                            pass
                    # Only now: a wake() after this sends a byte again, and one before it
                    # queued its work before calling wake(), so work() below still sees it.
                    self._woken = False
                    continue
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE and self._mqtt_sock is not None:
                    client.loop_write()
            if self._mqtt_sock is not None and time.monotonic() >= next_misc:
                client.loop_misc()  # keepalive pings, and the connection's timeouts
                next_misc = time.monotonic() + _MISC_INTERVAL
        if self._mqtt_sock is not None:  # the DISCONNECT did not go out in time: drop the line
            with contextlib.suppress(OSError):
                self._mqtt_sock.close()
        # Leave nothing queued for the store unrun: the owner closes the store after this.
        while self._safe_work():
            pass

    def _safe_work(self) -> bool:
        try:
            return self.work()
        except Exception:
            log.exception("bridge work failed")
            return False

    def _watch_writes(self) -> None:
        sock = self._mqtt_sock
        if sock is None:
            return
        events = selectors.EVENT_READ
        if self._client.want_write():
            events |= selectors.EVENT_WRITE
        if events != self._mqtt_events:
            self._selector.modify(sock, events, "mqtt")
            self._mqtt_events = events

    def _socket_opened(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        set_tcp_nodelay(sock)
        self._mqtt_sock = sock
        self._mqtt_events = selectors.EVENT_READ
        self._selector.register(sock, selectors.EVENT_READ, "mqtt")

    def _socket_closed(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if self._mqtt_sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self._mqtt_sock)
        self._mqtt_sock = None
        self._mqtt_events = 0

    # paho callbacks, on the session's thread

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
        with self._lock:
            filters = list(self._subscriptions.items())
        self._send_subscribe(filters)
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


def _settle(then: Callable[[BaseException | None], None], reason: ReasonCode) -> None:
    error = ConnectionError(f"broker refused the publish: {reason}") if reason.is_failure else None
    try:
        then(error)
    except Exception:
        log.exception("a publish callback failed")
