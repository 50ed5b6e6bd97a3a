"""The device agent: a thin threaded shell around :mod:`devices.core` and paho-mqtt.

Two threads: paho's network thread (``loop_start``) and one worker fed by a bounded queue. Paho
callbacks only enqueue, so a slow handler never stalls keepalives, acks or events. The worker
takes commands in arrival order, one at a time: journal, PUBACK, ``received``, handler, journal,
final ack.

Reconnects keep paho's own network loop but replace its delay with exponential backoff and full
jitter (:mod:`devices.backoff`), set from ``on_disconnect``/``on_connect_fail`` before paho waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import logging
import queue
import random
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from devices.backoff import Backoff
from devices.config import AgentSettings
from devices.core import Plan, Step
from devices.errors import DeviceError, JournalError
from devices.events import EventBuffer
from devices.handlers import H, HandlerRegistry, Validator
from devices.journal import Journal, MemoryJournal, SqliteJournal
from devices.pipeline import CommandPipeline
from devices.session import build_client, connect_args, offline_status, online_status
from tether.netutil import set_tcp_nodelay
from tether.protocol import (
    AckMessage,
    CancelNotice,
    DeviceEventMessage,
    decode_cancel_notice,
    utc_now,
)
from tether.protocol.payloads import validate_command_name

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 64 * 1024
_MAX_UNCONFIRMED = 10_000
_SWEEP_INTERVAL = 1.0  # how often the idle worker checks which final acks the broker confirmed


@dataclass(frozen=True, slots=True)
class _Inbound:
    payload: bytes
    mid: int
    qos: int
    generation: int  # the connection it arrived on; a PUBACK only makes sense on that one


class _Stop:
    pass


class _Wake:
    """Look at the cancel notices now (the worker was idle)."""


_Job = _Inbound | _Stop | _Wake


class DeviceAgent:
    """One device's MQTT agent.

    ``agent = DeviceAgent(AgentSettings(device_id=..., host=..., port=..., username=...,
    password=..., journal_path=...))``, register handlers with ``@agent.command("name")``, then
    ``agent.start()`` … ``agent.stop()`` (or ``with agent:``).
    """

    def __init__(
        self,
        settings: AgentSettings,
        *,
        registry: HandlerRegistry | None = None,
        journal: Journal | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else HandlerRegistry()
        self._journal = journal
        self._device = settings.device_id
        self._cmd_topic = settings.topics.cmd(self._device)
        self._ack_topic = settings.topics.ack(self._device)
        self._evt_topic = settings.topics.evt(self._device)
        self._status_topic = settings.topics.status(self._device)
        self._backoff = Backoff(
            settings.reconnect_base, settings.reconnect_cap, rng=rng or random.Random()
        )
        self._next_delay: float | None = None  # one-off reconnect delay (a requested reboot)
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=settings.queue_size)
        # Cancel notices skip the queue: they are for commands waiting in it.
        self._cancels: collections.deque[tuple[CancelNotice, _Inbound]] = collections.deque()
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._started = False
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._events = EventBuffer(settings.event_buffer, settings.event_policy)
        self._events_lock = threading.Lock()
        self._events_warned = False
        self._pubacked: collections.deque[int] = collections.deque(maxlen=4096)
        self._unconfirmed: dict[int, str] = {}  # mid of a final ack -> command id (worker only)
        self._reboot_after: float | None = None
        self._last_final: mqtt.MQTTMessageInfo | None = None
        self._pipeline: CommandPipeline | None = None
        self._worker: threading.Thread | None = None
        self._client = build_client(settings)
        self._client.on_socket_open = lambda _c, _u, sock: set_tcp_nodelay(sock)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish

    # public API

    def command(
        self,
        name: str | None = None,
        *,
        idempotent: bool = False,
        validate: Validator | None = None,
    ) -> Callable[[H], H]:
        """Decorator: ``@agent.command("reboot")`` registers a handler for that command name."""
        return self.registry.command(name, idempotent=idempotent, validate=validate)

    @property
    def device_id(self) -> str:
        return self._device

    @property
    def connected(self) -> bool:
        """Connected, subscribed to ``cmd`` and announced ``online``."""
        return self._connected.is_set()

    @property
    def events_dropped(self) -> int:
        with self._events_lock:
            return self._events.dropped

    @property
    def events_buffered(self) -> int:
        with self._events_lock:
            return len(self._events)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def start(self) -> None:
        """Open the journal, start the network thread and the worker; returns at once.

        Connecting (and reconnecting) happens in the background; see :meth:`wait_connected`.
        """
        if self._started:
            raise DeviceError("an agent starts once; make a new one to start again")
        self._started = True
        journal = self._journal if self._journal is not None else self._open_journal()
        self._journal = journal
        self._pipeline = CommandPipeline(
            journal, self.registry.lookup, self._send_ack, device_id=self._device
        )
        self._client.connect_async(**connect_args(self.settings))
        self._client.loop_start()
        self._worker = threading.Thread(
            target=self._work, name=f"tether-device-{self._device}", daemon=True
        )
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the command in hand, say ``offline``, disconnect. Queued commands that were not
        started stay unacknowledged, so the broker delivers them again next session."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        worker = self._worker
        if worker is not None:
            with contextlib.suppress(queue.Full):
                self._jobs.put(_Stop(), timeout=timeout)
            worker.join(timeout)
            if worker.is_alive():
                log.warning(
                    "%s: a handler is still running after %.0f s; stopping anyway",
                    self._device,
                    timeout,
                )
        if self._connected.is_set():
            info = self._client.publish(self._status_topic, offline_status(), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(min(timeout, 2.0))
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
        if self._journal is not None and (worker is None or not worker.is_alive()):
            self._journal.close()

    def emit(self, name: str, data: Any = None) -> bool:
        """Publish an event on ``evt`` at QoS 1. Offline, it is buffered (bounded, oldest dropped
        first by default). Returns True if published now, False if buffered or dropped."""
        event = DeviceEventMessage(validate_command_name(name, "event"), utc_now(), data)
        payload = event.encode()
        if len(payload) > MAX_EVENT_BYTES:
            raise ValueError(
                f"event is {len(payload)} bytes encoded; the limit is {MAX_EVENT_BYTES}"
            )
        with self._events_lock:
            if self._connected.is_set():
                self._client.publish(self._evt_topic, payload, qos=1)
                return True
            if not self._events.push(event) and not self._events_warned:
                self._events_warned = True
                log.warning(
                    "%s: offline and the event buffer (%d) is full: dropping %s events",
                    self._device,
                    self._events.limit,
                    "the oldest" if self._events.policy == "drop_oldest" else "new",
                )
            return False

    def drop_connection(self, reconnect_after: float | None = None) -> None:
        """Cut the TCP connection as a network failure would (the broker publishes the Last
        Will), then reconnect as usual, or after ``reconnect_after`` seconds when given."""
        self._next_delay = reconnect_after
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def request_reboot(self, delay: float = 1.0) -> None:
        """From a handler: once this command's final ack is out, drop the connection and come
        back after ``delay`` seconds (what the demo ``reboot`` command does)."""
        self._reboot_after = delay

    def __enter__(self) -> DeviceAgent:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # worker thread

    def _open_journal(self) -> Journal:
        path = self.settings.journal_path
        if path is None:
            log.warning(
                "%s: no journal path: commands are run once only while this process lives",
                self._device,
            )
            return MemoryJournal(self.settings.journal_keep)
        return SqliteJournal(path, self.settings.journal_keep)

    def _work(self) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        try:
            for plan in pipeline.recover():
                self._run(pipeline, plan)
        except JournalError:
            log.exception("%s: journal unusable during recovery", self._device)
        while True:
            try:
                job = self._jobs.get(timeout=_SWEEP_INTERVAL)
            except queue.Empty:
                job = None
            self._sweep_confirmations()
            if isinstance(job, _Stop):
                return
            if self._stopping.is_set():
                continue  # unacknowledged: the broker delivers it again next session
            self._take_cancels(pipeline)
            if not isinstance(job, _Inbound):
                continue
            try:
                self._handle(pipeline, job)
            except JournalError:
                log.exception(
                    "%s: journal write failed; the command stays unacknowledged", self._device
                )
            except Exception:
                log.exception("%s: unexpected error handling a command", self._device)

    def _take_cancels(self, pipeline: CommandPipeline) -> None:
        while self._cancels:
            notice, job = self._cancels.popleft()
            try:
                pipeline.cancel(notice, settle=functools.partial(self._puback, job))
            except JournalError:
                log.exception("%s: could not record a cancel notice", self._device)

    def _handle(self, pipeline: CommandPipeline, job: _Inbound) -> None:
        # PUBACK only once the journal has it (or it needs no record), and before `received`.
        plan = pipeline.accept(job.payload, settle=lambda: self._puback(job))
        if plan.step is Step.RUN:
            self._run(pipeline, plan)

    def _run(self, pipeline: CommandPipeline, plan: Plan) -> None:
        assert plan.spec is not None and plan.command is not None
        self._reboot_after = None
        try:
            result = plan.spec.handler(dict(plan.command.args))
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        except Exception as exc:
            log.info(
                "%s: command %s (%s) raised %s: %s",
                self._device,
                plan.command.id,
                plan.command.name,
                type(exc).__name__,
                exc,
            )
            pipeline.complete(plan, error=exc)
        else:
            pipeline.complete(plan, result=result)
        if self._reboot_after is not None:
            self._reboot(self._reboot_after)

    def _reboot(self, delay: float) -> None:
        self._reboot_after = None
        last = self._last_final
        if last is not None:
            with contextlib.suppress(RuntimeError, ValueError):
                last.wait_for_publish(2.0)  # let the reboot's own ack out first
        log.info("%s: rebooting: dropping the connection, back in %.1f s", self._device, delay)
        self.drop_connection(reconnect_after=delay)

    def _send_ack(self, ack: AckMessage) -> None:
        info = self._client.publish(self._ack_topic, ack.encode(), qos=1)
        if ack.status.is_final:
            self._unconfirmed[info.mid] = ack.id
            if len(self._unconfirmed) > _MAX_UNCONFIRMED:  # bounded: at worst a spare re-send
                del self._unconfirmed[next(iter(self._unconfirmed))]
            self._last_final = info

    def _puback(self, job: _Inbound) -> None:
        if job.qos == 0:
            return
        with self._generation_lock:
            if job.generation == self._generation:
                self._client.ack(job.mid, job.qos)
                return
        log.info(
            "%s: reconnected since message %d arrived; the broker will deliver it again",
            self._device,
            job.mid,
        )

    def _sweep_confirmations(self) -> None:
        """Mark final acks the broker has PUBACKed, so a restart does not re-send them."""
        if not self._pubacked or self._journal is None:
            return
        mids = set()
        while self._pubacked:
            mids.add(self._pubacked.popleft())
        for mid in mids & self._unconfirmed.keys():
            command_id = self._unconfirmed.pop(mid)
            try:
                self._journal.mark_confirmed(command_id)
            except JournalError:
                log.exception("%s: could not mark %s confirmed", self._device, command_id)

    # paho callbacks (network thread): never block, never raise

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            log.error("%s: the broker refused the connection: %s", self._device, reason)
            return
        with self._generation_lock:
            self._generation += 1
        self._backoff.reset()
        self._next_delay = None
        log.info(
            "%s: connected to %s:%d (session present: %s)",
            self._device,
            self.settings.host,
            self.settings.port,
            flags.session_present,
        )
        client.subscribe(self._cmd_topic, qos=1)  # `online` only once the SUBACK is in

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error(
                "%s: not allowed to subscribe to %s: %s", self._device, self._cmd_topic, reasons
            )
            return
        client.publish(self._status_topic, online_status(self.settings), qos=1, retain=True)
        with self._events_lock:
            for event in self._events.drain():
                client.publish(self._evt_topic, event.encode(), qos=1)
            self._events_warned = False
            self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        with self._generation_lock:
            self._generation += 1
        with self._events_lock:
            self._connected.clear()
        if self._stopping.is_set():
            return
        delay = self._schedule_reconnect()
        log.warning("%s: disconnected (%s); reconnecting in %.2f s", self._device, reason, delay)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        delay = self._schedule_reconnect()
        log.warning(
            "%s: cannot reach %s:%d; retrying in %.2f s",
            self._device,
            self.settings.host,
            self.settings.port,
            delay,
        )

    def _schedule_reconnect(self) -> float:
        delay = self._next_delay if self._next_delay is not None else self._backoff.next_delay()
        self._next_delay = None
        # paho annotates the delay as int but only adds it to its float clock: keep the jitter.
        self._client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]
        return delay

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        job = _Inbound(bytes(message.payload), message.mid, message.qos, self._generation)
        # Only a payload with a "cancel" key can be a notice: a command is not decoded twice.
        notice = decode_cancel_notice(job.payload) if b'"cancel"' in job.payload else None
        if notice is not None:
            self._cancels.append((notice, job))
            with contextlib.suppress(queue.Full):  # full: the worker is busy and looks anyway
                self._jobs.put_nowait(_Wake())
            return
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            # Not acknowledged, so not lost: the broker delivers it again next session.
            log.error(
                "%s: worker queue full (%d); leaving message %d unacknowledged",
                self._device,
                self.settings.queue_size,
                message.mid,
            )

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any
    ) -> None:
        self._pubacked.append(mid)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
