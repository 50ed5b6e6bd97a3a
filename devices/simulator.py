"""Many simulated devices in one asyncio process: no thread per device.

Each device is an :class:`aiomqtt.Client` (``async with client``, ``async for message in
client.messages``): aiomqtt drives paho from the event loop (``add_reader``/``add_writer``, a
``loop_misc`` task per client for keepalives) and runs each blocking TCP connect in the loop's
default executor. At most ``connect_concurrency`` devices sit between TCP connect and CONNACK at
once, which also keeps the broker's listen backlog from overflowing.

What a device needs beyond aiomqtt 2.5 lives in :class:`DeviceClient`, the one place that
touches aiomqtt's insides: PUBACKs sent by the device once its journal has a command (aiomqtt
acks before it hands a message over; empicano/aiomqtt#345 shows the same paho switch), acks and
events published without awaiting each PUBACK, Nagle off, a CONNACK awaited again on every
reconnect (aiomqtt 2.5 keeps the first one's future; see empicano/aiomqtt#369), socket
registrations that land only on the socket paho still holds (aiomqtt's can land on a closed or
reused descriptor when devices flap), and the socket itself, to cut it like a network failure.
The incoming queue is unbounded so aiomqtt never drops a command; what bounds it is the
broker's flow control, since nothing is acknowledged before the journal has it (MQTT 5 Receive
Maximum, Mosquitto's ``max_inflight_messages`` on 3.1.1).

Devices follow the same rules as the agent (:mod:`devices.core` through
:class:`~devices.pipeline.CommandPipeline`) with an in-memory journal each, and run the demo
commands with a simulated handler latency and failure rate. Knobs for random disconnects and
periodic events make it a demo and a load generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import resource
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from devices.backoff import Backoff
from devices.config import AgentSettings, MqttVersion
from devices.core import Plan, Step
from devices.demo import DEMO_COMMANDS, DemoState
from devices.errors import ConfigError, DeviceError
from devices.events import EventBuffer, OverflowPolicy
from devices.handlers import CommandSpec, HandlerRegistry
from devices.journal import MemoryJournal
from devices.pipeline import CommandPipeline
from devices.provision import DeviceCredentials
from devices.session import connect_args, offline_status, online_status, paho_log
from tether.protocol import (
    DEFAULT_PREFIX,
    AckMessage,
    DeviceEventMessage,
    StatusMessage,
    utc_now,
)
from tether.settings import setting

log = logging.getLogger(__name__)

Report = Callable[[dict[str, Any]], None]


class SimulatedFailure(DeviceError):
    """What a simulated handler raises when the dice say so."""


@dataclass(frozen=True, slots=True)
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = DEFAULT_PREFIX
    mqtt_version: MqttVersion = MqttVersion.V5
    keepalive: int = 25
    latency: float = setting(
        0.05, env="SIM_LATENCY", help="mean handler latency in seconds, uniform in [0, 2x]"
    )
    failure_rate: float = setting(
        0.0,
        env="SIM_FAILURE_RATE",
        help="chance a command fails with 'simulated failure' (0..1)",
    )
    disconnect_every: float = setting(
        0.0,
        env="SIM_DISCONNECT_EVERY",
        default_text="0: never",
        help="mean seconds between random connection drops, per device",
    )
    event_every: float = setting(
        0.0,
        env="SIM_EVENT_EVERY",
        default_text="0: never",
        help="mean seconds between heartbeat events, per device",
    )
    event_buffer: int = 16  # events kept per device while offline (oldest dropped first)
    # devices between TCP connect and CONNACK at once
    connect_concurrency: int = setting(
        64, env="SIM_CONNECT_CONCURRENCY", help="devices connecting at once"
    )
    journal_keep: int = 2000  # above the bridge's pending limit: any pending id may come twice
    reconnect_base: float = 0.5
    reconnect_cap: float = 30.0
    report_every: float = setting(
        5.0,
        env="SIM_REPORT_EVERY",
        default_text="5; 0: milestones only",
        help="seconds between JSON stats lines on stdout",
    )
    seed: int | None = setting(None, env="SIM_SEED", help="random seed, for repeatable runs")

    def __post_init__(self) -> None:
        if not 0 <= self.failure_rate <= 1:
            raise ConfigError("failure rate must be between 0 and 1")
        if min(self.latency, self.disconnect_every, self.event_every, self.report_every) < 0:
            raise ConfigError("latency and intervals cannot be negative")
        if self.connect_concurrency < 1:
            raise ConfigError("connect concurrency must be at least 1")


@dataclass(slots=True)
class FleetStats:
    devices: int = 0
    connected: int = 0
    connects: int = 0
    disconnects: int = 0
    commands: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    expired: int = 0
    duplicates: int = 0
    events_sent: int = 0
    events_dropped: int = 0
    started: float = field(default_factory=time.monotonic)


def raise_nofile_limit() -> int:
    """Raise this process's soft open-files limit to its hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int | str = "self") -> int:
    """Resident set size of a process in KiB, from ``/proc/<pid>/status`` (0 if unknown)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def print_report(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class DeviceClient(aiomqtt.Client):
    """An :class:`aiomqtt.Client` holding one device's persistent session (see the module doc)."""

    def __init__(self, settings: AgentSettings) -> None:
        v5 = settings.mqtt_version is MqttVersion.V5
        session = connect_args(settings)  # Clean Start 0 and the CONNECT properties on MQTT 5
        super().__init__(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            logger=paho_log,
            identifier=settings.effective_client_id,
            protocol=aiomqtt.ProtocolVersion(settings.mqtt_version.paho),
            will=aiomqtt.Will(
                settings.topics.status(settings.device_id),
                StatusMessage(online=False).encode(),
                qos=1,
                retain=True,
            ),
            clean_session=None if v5 else False,
            keepalive=settings.keepalive,
            timeout=settings.keepalive,  # a CONNACK or SUBACK: as long as paho itself would wait
            max_queued_incoming_messages=0,  # unbounded: aiomqtt drops a message when it is full
            properties=session.get("properties"),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            **({"clean_start": session["clean_start"]} if v5 else {}),
        )
        self._client.manual_ack_set(True)
        self._loop_thread = threading.get_ident()  # aiomqtt's client belongs to the running loop
        self._client.connect_timeout = settings.connect_timeout

    async def __aenter__(self) -> Self:
        # aiomqtt 2.5 resolves `_connected` on the first CONNACK and keeps it after a dropped
        # connection, so re-entering would not wait for the next CONNACK (aiomqtt#369).
        for attr in ("_connected", "_disconnected"):
            done: asyncio.Future[None] = getattr(self, attr)
            if done.done():
                if not done.cancelled():
                    done.exception()  # retrieved: a dropped connection is no error here
                setattr(self, attr, asyncio.Future())
        return await super().__aenter__()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any = None,
    ) -> None:
        # aiomqtt 2.5 ignores a connection lost before its CONNACK, so `__aenter__` would wait
        # out `timeout` (the keepalive) for a CONNACK that cannot come: fail the attempt now.
        # Pending `_connected` with the lock held: inside `__aenter__` (paho calls this on the
        # loop thread, from loop_read, loop_write or loop_misc).
        if not self._connected.done() and self._lock.locked():
            self._connected.set_exception(
                aiomqtt.MqttError(f"connection lost before CONNACK: {reason_code}")
            )
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    # aiomqtt 2.5 registers a socket with the loop later (``call_soon_threadsafe``), and does not
    # check when that runs whether the socket is still open: a device that drops and reconnects
    # within a loop turn then gets its reader, or a stale writer, on a closed descriptor or on
    # another device's new socket with the same number. These two land only on the socket paho
    # still holds; the rest (reads, writes, keepalive, closing) is aiomqtt's.

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._soon(self._watch_reads, sock)

    def _on_socket_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._soon(self._watch_writes, sock)

    def _soon(self, fn: Callable[[Any], None], sock: Any) -> None:
        # paho calls from the loop (publishes) or from the executor thread (connects); only the
        # latter needs the thread-safe path, which writes to the loop's wake-up pipe every time.
        if threading.get_ident() == self._loop_thread:
            self._loop.call_soon(fn, sock)
        else:
            self._loop.call_soon_threadsafe(fn, sock)

    def _watch_reads(self, sock: Any) -> None:
        current = self._client.socket()
        if current is None or current is not sock:
            return  # closed (or replaced) since
        self._loop.add_reader(current.fileno(), self._readable)
        self._misc_task = self._loop.create_task(self._misc_loop())

    def _watch_writes(self, sock: Any) -> None:
        # Most of the time the kernel takes the bytes at once: write on this loop turn and only
        # watch for writability when it is full, so a publish costs no epoll changes.
        current = self._client.socket()
        if current is None or current is not sock:
            return
        self._writable()
        current = self._client.socket()
        if current is not None and current is sock and self._client.want_write():
            self._loop.add_writer(current.fileno(), self._writable)

    def _readable(self) -> None:
        self._on_network(self._client.loop_read)

    def _writable(self) -> None:
        self._on_network(self._client.loop_write)

    def _on_network(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:  # a broken connection, as aiomqtt's own callbacks treat it
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def publish_nowait(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish at QoS 1 without waiting for the PUBACK (aiomqtt's ``publish`` awaits it, a
        task and two futures per message): paho keeps the message until the broker has it,
        across reconnects of this persistent session, as the agent's paho client does."""
        self._client.publish(topic, payload, qos=1, retain=retain)

    def ack(self, message: aiomqtt.Message) -> None:
        """PUBACK ``message`` (aiomqtt would have done it before handing the message over)."""
        self._client.ack(message.mid, message.qos)

    def cut(self) -> None:
        """Shut the TCP connection down like a network failure; the broker sends the Will."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def abandon(self) -> None:
        """Close a socket paho still holds with no session on it (no CONNACK came in time)."""
        self._client._sock_close()


def _refused(reasons: tuple[int, ...] | list[ReasonCode]) -> bool:
    return any(r.is_failure if isinstance(r, ReasonCode) else r >= 0x80 for r in reasons)


class Phase(enum.Enum):
    WAITING = "waiting"  # between attempts
    CONNECTING = "connecting"  # for a connect slot, the TCP connect or the CONNACK
    SERVING = "serving"
    CLOSING = "closing"


class SimulatedDevice:
    """One device: its aiomqtt client and task on the shared loop, its journal, config and queue."""

    def __init__(self, fleet: Simulator, creds: DeviceCredentials) -> None:
        opts = fleet.options
        self.fleet = fleet
        self.device_id = creds.device_id
        self.settings = AgentSettings(
            creds.device_id,
            opts.host,
            opts.port,
            creds.username,
            creds.password,
            prefix=opts.prefix,
            mqtt_version=opts.mqtt_version,
            keepalive=opts.keepalive,
            reconnect_base=opts.reconnect_base,
            reconnect_cap=max(opts.reconnect_cap, opts.reconnect_base),
            agent_name="tether-simulator",
            features=(),  # it records a command as it arrives: nothing left to cancel
        )
        topics = self.settings.topics
        self.cmd_topic = topics.cmd(self.device_id)
        self.ack_topic = topics.ack(self.device_id)
        self.evt_topic = topics.evt(self.device_id)
        self.status_topic = topics.status(self.device_id)
        self.state = DemoState(reboot=self._request_reboot)
        self.pipeline = CommandPipeline(
            MemoryJournal(opts.journal_keep), fleet.lookup, self._send_ack, device_id=self.device_id
        )
        self.backoff = Backoff(
            self.settings.reconnect_base, self.settings.reconnect_cap, rng=fleet.rng
        )
        self.runq: deque[Plan] = deque()
        self.runner: asyncio.Task[None] | None = None
        self.events: EventBuffer | None = None
        self.connected = False  # subscribed and said online on the current connection
        self.phase = Phase.WAITING
        self.task: asyncio.Task[None] | None = None
        self.next_delay: float | None = None
        self.reboot_after: float | None = None
        self.client = DeviceClient(self.settings)

    # connection lifecycle

    async def run(self) -> None:
        """Connect, serve, and after a backoff connect again, until the fleet stops."""
        while not self.fleet.stopping:
            why = await self._connection()
            if self.fleet.stopping:
                return
            delay = self.next_delay if self.next_delay is not None else self.backoff.next_delay()
            self.next_delay = None
            log.debug("%s: %s; retrying in %.2f s", self.device_id, why, delay)
            self.phase = Phase.WAITING
            await asyncio.sleep(delay)

    async def _connection(self) -> str:
        """One connection, from a connect slot to the disconnect; returns why it ended."""
        self.phase = Phase.CONNECTING
        try:
            async with contextlib.AsyncExitStack() as session:
                async with self.fleet.connect_slots:
                    if self.fleet.stopping:
                        return "stopping"
                    await session.enter_async_context(self.client)
                session.push_async_exit(self._end)  # before the disconnect
                self.phase = Phase.SERVING
                self.backoff.reset()
                if not self.fleet.stopping:
                    await self._serve()
                return "stopping"
        except aiomqtt.MqttError as exc:
            if self.phase is Phase.SERVING or self.phase is Phase.CLOSING:
                return f"disconnected ({exc})"
            self.client.abandon()
            if isinstance(exc, MqttConnectError):
                log.warning("%s: the broker refused the connection: %s", self.device_id, exc)
            return f"cannot connect: {exc}"

    async def _serve(self) -> None:
        """Take commands until the connection drops (``MqttError``) or the fleet stops."""
        announce = self.fleet.spawn(self._announce())
        try:
            async for message in self.client.messages:
                self._on_message(message)
        finally:
            announce.cancel()

    async def _announce(self) -> None:
        try:
            reasons = await self.client.subscribe(self.cmd_topic, qos=1)
        except aiomqtt.MqttError as exc:
            log.debug("%s: no SUBACK: %s", self.device_id, exc)
            return
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # The connection ended (`_serve` cancelled this) on the loop turn the SUBACK came
            # in, and Python 3.11's `wait_for` then returns the result instead of raising
            # CancelledError. Going on would mark a closed connection `connected` after `_end`,
            # and the chaos drop would then cut the next connection before its CONNACK.
            return
        if _refused(reasons):
            log.error("%s: not allowed to subscribe to %s", self.device_id, self.cmd_topic)
            return
        # `online` only once the SUBACK is in; publishes go out in the order they are made.
        self._send(self.status_topic, online_status(self.settings), retain=True)
        if not self.connected:
            self.connected = True
            self.fleet.device_connected(self)
        if self.events:
            for event in self.events.drain():
                self._publish_event(event)

    async def _end(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        """Leaving a connection: if the fleet stopped it (not the network), say offline first."""
        self.phase = Phase.CLOSING
        was_online, self.connected = self.connected, False
        if was_online:
            self.fleet.device_disconnected(self)
        stopped = exc_type is None or issubclass(exc_type, asyncio.CancelledError)
        if was_online and stopped and self.fleet.stopping:
            with contextlib.suppress(aiomqtt.MqttError):
                await self.client.publish(
                    self.status_topic, offline_status(), qos=1, retain=True, timeout=5.0
                )
        return False

    def stop(self) -> None:
        """The fleet is stopping: end a wait or a connection now (a connect in flight finishes
        first, then disconnects)."""
        if self.task is not None and self.phase in (Phase.WAITING, Phase.SERVING):
            self.task.cancel()

    def drop(self, reconnect_after: float | None = None) -> None:
        """Cut the TCP connection like a network failure; the broker publishes the Last Will."""
        self.next_delay = reconnect_after
        self.client.cut()

    # commands

    def _on_message(self, message: aiomqtt.Message) -> None:
        # PUBACK once the (in-memory) journal has it, before `received`, as the agent does.
        plan = self.pipeline.accept(message.payload, settle=lambda: self.client.ack(message))
        self.fleet.count_plan(plan)
        if plan.step is Step.RUN:
            self.runq.append(plan)
            if self.runner is None:
                self.runner = self.fleet.spawn(self._run_queue())

    async def _run_queue(self) -> None:
        try:
            while self.runq:
                plan = self.runq.popleft()
                try:
                    result = await self.fleet.execute(self, plan)
                except Exception as exc:
                    ack = self.pipeline.complete(plan, error=exc)
                else:
                    ack = self.pipeline.complete(plan, result=result)
                self.fleet.count_final(ack)
                if self.reboot_after is not None:
                    delay, self.reboot_after = self.reboot_after, None
                    self.drop(reconnect_after=delay)
        finally:
            self.runner = None

    def _request_reboot(self, delay: float) -> None:
        self.reboot_after = delay

    def _send_ack(self, ack: AckMessage) -> None:
        self._send(self.ack_topic, ack.encode())

    def _send(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish_nowait(topic, payload, retain=retain)

    # events

    def emit(self, name: str, data: Any = None) -> bool:
        event = DeviceEventMessage(name, utc_now(), data)
        if self.connected:
            self._publish_event(event)
            return True
        if self.events is None:
            self.events = EventBuffer(self.fleet.options.event_buffer, OverflowPolicy.DROP_OLDEST)
        if not self.events.push(event):
            self.fleet.stats.events_dropped += 1
        return False

    def _publish_event(self, event: DeviceEventMessage) -> None:
        self._send(self.evt_topic, event.encode())
        self.fleet.stats.events_sent += 1


class Simulator:
    """``await Simulator(options, credentials).run(stop_event)``: connect the fleet, keep it
    connected and answering until ``stop_event`` is set, then say offline and disconnect."""

    def __init__(
        self,
        options: SimOptions,
        credentials: list[DeviceCredentials],
        *,
        report: Report = print_report,
    ) -> None:
        self.options = options
        self.credentials = credentials
        self.report = report
        self.rng = random.Random(options.seed)
        self.stats = FleetStats(devices=len(credentials))
        self.lookup = _demo_lookup()
        self.devices: list[SimulatedDevice] = []
        self.by_id: dict[str, SimulatedDevice] = {}
        self.stopping = False
        self.all_connected = asyncio.Event()
        self.all_connected_after: float | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connect_slots = asyncio.Semaphore(options.connect_concurrency)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, stop: asyncio.Event) -> FleetStats:
        limit = raise_nofile_limit()
        if limit < len(self.credentials) + 64:
            log.warning("open-files limit %d is below %d devices", limit, len(self.credentials))
        self.stats.started = time.monotonic()
        for creds in self.credentials:
            device = SimulatedDevice(self, creds)
            self.devices.append(device)
            self.by_id[device.device_id] = device
        self.report({"type": "starting", "devices": len(self.devices), "rss_kib": rss_kib()})
        if not self.devices:
            self.all_connected.set()
        background = [self.spawn(self._report_loop())]
        if self.options.disconnect_every > 0:
            background.append(self.spawn(self._chaos()))
        if self.options.event_every > 0:
            background.append(self.spawn(self._heartbeats()))
        for device in self.devices:
            device.task = self.spawn(device.run())
        try:
            await stop.wait()
        finally:
            await self._shutdown(background)
        return self.stats

    async def _shutdown(self, background: list[asyncio.Task[Any]]) -> None:
        self.stopping = True
        for task in background:
            task.cancel()
        for device in self.devices:
            device.stop()
        # Connected devices say offline and disconnect; connects in flight finish, then do too.
        running = [d.task for d in self.devices if d.task is not None and not d.task.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=10.0)
            for task in late:
                task.cancel()
        for device in self.devices:
            device.client.abandon()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await asyncio.sleep(0)  # aiomqtt's keepalive tasks, cancelled as their sockets closed
        self.report({"type": "stopped", **self.snapshot()})

    # bookkeeping

    def device_connected(self, device: SimulatedDevice) -> None:
        self.stats.connected += 1
        self.stats.connects += 1
        if self.stats.connected == len(self.devices) and not self.all_connected.is_set():
            self.all_connected_after = time.monotonic() - self.stats.started
            self.all_connected.set()
            self.report(
                {
                    "type": "all_connected",
                    "devices": len(self.devices),
                    "seconds": round(self.all_connected_after, 3),
                    "rss_kib": rss_kib(),
                }
            )

    def device_disconnected(self, device: SimulatedDevice) -> None:
        self.stats.connected -= 1
        self.stats.disconnects += 1

    def count_plan(self, plan: Plan) -> None:
        if plan.step is Step.RUN:
            self.stats.commands += 1
        elif plan.step in (Step.RESEND, Step.PENDING):
            self.stats.duplicates += 1
        elif plan.step is Step.FINISH and plan.ack is not None:
            self.count_final(plan.ack)

    def count_final(self, ack: AckMessage) -> None:
        name = ack.status.value
        if hasattr(self.stats, name):
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def snapshot(self) -> dict[str, Any]:
        s = self.stats
        return {
            "devices": s.devices,
            "connected": s.connected,
            "connects": s.connects,
            "disconnects": s.disconnects,
            "commands": s.commands,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "rejected": s.rejected,
            "expired": s.expired,
            "duplicates": s.duplicates,
            "events_sent": s.events_sent,
            "events_dropped": s.events_dropped,
            "uptime": round(time.monotonic() - s.started, 1),
            "rss_kib": rss_kib(),
        }

    # simulated handlers

    async def execute(self, device: SimulatedDevice, plan: Plan) -> Any:
        assert plan.command is not None
        opts = self.options
        if opts.latency > 0:
            await asyncio.sleep(self.rng.uniform(0, 2 * opts.latency))
        if opts.failure_rate and self.rng.random() < opts.failure_rate:
            raise SimulatedFailure("simulated failure")
        args = plan.command.args
        if plan.command.name == "sleep":
            seconds = float(args["seconds"])
            await asyncio.sleep(seconds)
            return {"slept": seconds}
        return DEMO_COMMANDS[plan.command.name].run(device.state, dict(args))

    # background tasks

    async def _report_loop(self) -> None:
        if self.options.report_every <= 0:
            return
        while True:
            await asyncio.sleep(self.options.report_every)
            self.report({"type": "stats", **self.snapshot()})

    async def _chaos(self) -> None:
        """Random disconnects: on average one per device every ``disconnect_every`` seconds."""
        rate = len(self.devices) / self.options.disconnect_every
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))
            device = self.rng.choice(self.devices)
            if device.connected:
                device.drop()

    async def _heartbeats(self) -> None:
        """On average one ``heartbeat`` event per device every ``event_every`` seconds."""
        tick = 0.1
        per_tick = len(self.devices) / self.options.event_every * tick
        carry = 0.0
        while True:
            await asyncio.sleep(tick)
            carry += per_tick
            count, carry = int(carry), carry - int(carry)
            for _ in range(count):
                device = self.rng.choice(self.devices)
                device.emit("heartbeat", {"uptime": round(time.monotonic() - self.stats.started)})


def _demo_lookup() -> Callable[[str], CommandSpec | None]:
    registry = HandlerRegistry()
    for name, command in DEMO_COMMANDS.items():
        registry.add(name, _not_called, idempotent=command.idempotent, validate=command.validate)
    return registry.lookup


def _not_called(args: dict[str, Any]) -> Any:
    raise AssertionError("simulated devices run commands through Simulator.execute")


async def run_until_signalled(simulator: Simulator, duration: float = 0.0) -> FleetStats:
    """Run until SIGINT/SIGTERM (or ``duration`` seconds when > 0)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if duration > 0:
        loop.call_later(duration, stop.set)
    return await simulator.run(stop)
