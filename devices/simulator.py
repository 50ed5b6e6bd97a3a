"""Many simulated devices in one asyncio process: no thread per device.

Each device is a paho client driven by the event loop the way aiomqtt drives one: its socket is
registered with ``add_reader``/``add_writer`` and paho's ``loop_read``/``loop_write`` run when it is
ready; one shared ticker calls ``loop_misc`` (keepalive) for every device. TCP connects, which
block, run in a small thread pool and at most ``connect_concurrency`` at a time, which also keeps
the broker's listen backlog from overflowing.

Devices follow the same rules as the agent (:mod:`devices.core` through
:class:`~devices.pipeline.CommandPipeline`) with an in-memory journal each, and run the demo
commands with a simulated handler latency and failure rate. Knobs for random disconnects and
periodic events make it a demo and a load generator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import random
import resource
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
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
from devices.session import build_client, connect_args, offline_status, online_status
from tether.netutil import set_tcp_nodelay
from tether.protocol import DEFAULT_PREFIX, AckMessage, DeviceEventMessage, utc_now
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


class SimulatedDevice:
    """One device: a paho client on the shared loop, its journal, its config and its queue."""

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
        self.connected = False
        self.connecting = False
        self.in_executor = False
        self.writer: Any = None  # the socket watched for writability, when the kernel is full
        self.holding_slot = False
        self.generation = 0
        self.next_delay: float | None = None
        self.reboot_after: float | None = None
        self.client = build_client(self.settings, logger=False)
        self.client.connect_async(**connect_args(self.settings))
        client = self.client
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message

    # socket plumbing: paho calls these from the loop, or from a connect in the thread pool

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        set_tcp_nodelay(sock)
        self.fleet.in_loop(self._watch_socket, sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.fleet.in_loop(self._forget_socket, sock)

    def _watch_socket(self, sock: Any) -> None:
        self.fleet.loop.add_reader(sock, self._readable)
        self.fleet.sockets_open(+1)

    def _forget_socket(self, sock: Any) -> None:
        self.fleet.loop.remove_reader(sock)
        if self.writer is not None:
            self.fleet.loop.remove_writer(sock)
            self.writer = None
        self.fleet.sockets_open(-1)

    # Writes: paho says "I have bytes to send". Most of the time the socket takes them at once,
    # so first try on the next loop turn (call_soon) and only watch for writability (epoll) when
    # the kernel buffer is full: a publish then costs no epoll changes at all.

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.fleet.in_loop(self.fleet.loop.call_soon, self._flush, sock)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self.fleet.in_loop(self._stop_watching_writes, sock)

    def _flush(self, sock: Any) -> None:
        if self.client.socket() is not sock:
            return  # closed (or replaced) since
        self.client.loop_write()
        current = self.client.socket()
        watch = current is not None and current is sock and self.writer is None
        if watch and current is not None and self.client.want_write():
            self.writer = current
            self.fleet.loop.add_writer(current, self._writable)

    def _stop_watching_writes(self, sock: Any) -> None:
        if self.writer is sock:
            self.fleet.loop.remove_writer(sock)
            self.writer = None

    def _readable(self) -> None:
        self.client.loop_read()

    def _writable(self) -> None:
        self.client.loop_write()

    # connection lifecycle (loop thread)

    async def connect(self) -> None:
        """One attempt: a slot, the TCP connect in the pool, then CONNACK on the loop."""
        if self.fleet.stopping or self.connecting or self.connected:
            return
        self.connecting = True
        await self.fleet.connect_slots.acquire()
        self.holding_slot = True
        if self.fleet.stopping:
            self.connecting = False
            self._release_slot()
            return
        self.in_executor = True
        try:
            await self.fleet.loop.run_in_executor(self.fleet.executor, self.client.reconnect)
        except (OSError, ValueError, RuntimeError) as exc:
            self.connecting = False
            self._release_slot()
            self._retry_later(f"cannot connect: {exc}")
        finally:
            self.in_executor = False

    def _release_slot(self) -> None:
        if self.holding_slot:
            self.holding_slot = False
            self.fleet.connect_slots.release()

    def _retry_later(self, why: str) -> None:
        if self.fleet.stopping:
            return
        delay = self.next_delay if self.next_delay is not None else self.backoff.next_delay()
        self.next_delay = None
        log.debug("%s: %s; retrying in %.2f s", self.device_id, why, delay)
        self.fleet.loop.call_later(delay, self._spawn_connect)

    def _spawn_connect(self) -> None:
        if not self.fleet.stopping:
            self.fleet.spawn(self.connect())

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.connecting = False
        self._release_slot()
        if reason.is_failure:
            log.warning("%s: the broker refused the connection: %s", self.device_id, reason)
            return
        self.generation += 1
        self.backoff.reset()
        client.subscribe(self.cmd_topic, qos=1)  # `online` only once the SUBACK is in

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any
    ) -> None:
        if any(reason.is_failure for reason in reasons):
            log.error("%s: not allowed to subscribe to %s", self.device_id, self.cmd_topic)
            return
        client.publish(self.status_topic, online_status(self.settings), qos=1, retain=True)
        if not self.connected:
            self.connected = True
            self.fleet.device_connected(self)
        if self.events:
            for event in self.events.drain():
                self._publish_event(event)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self.generation += 1
        self.connecting = False
        self._release_slot()
        if self.connected:
            self.connected = False
            self.fleet.device_disconnected(self)
        self._retry_later(f"disconnected ({reason})")

    def drop(self, reconnect_after: float | None = None) -> None:
        """Cut the TCP connection like a network failure; the broker publishes the Last Will."""
        self.next_delay = reconnect_after
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def detach(self) -> None:
        """Forget the socket paho still holds (the broker did not answer in time) and close it."""
        client = self.client
        sock = client.socket()
        client.on_socket_close = client.on_socket_unregister_write = None
        client.on_socket_open = client.on_socket_register_write = None
        if sock is not None:
            self._forget_socket(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        """Say offline and disconnect cleanly (the fleet is stopping)."""
        if self.connected:
            self.client.publish(self.status_topic, offline_status(), qos=1, retain=True)
        self.client.disconnect()

    # commands

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # PUBACK once the (in-memory) journal has it, before `received`, as the agent does.
        plan = self.pipeline.accept(
            message.payload, settle=lambda: client.ack(message.mid, message.qos)
        )
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
        self.client.publish(self.ack_topic, ack.encode(), qos=1)

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
        self.client.publish(self.evt_topic, event.encode(), qos=1)
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
        self._open_sockets = 0
        self._all_closed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self.connect_slots = asyncio.Semaphore(options.connect_concurrency)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(8, options.connect_concurrency), thread_name_prefix="sim-connect"
        )

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the simulator is not running"
        return self._loop

    def in_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn`` on the loop thread: now if we are on it, else as soon as it can."""
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self.loop.call_soon_threadsafe(fn, *args)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self, stop: asyncio.Event) -> FleetStats:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
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
        background = [self.spawn(self._keepalive()), self.spawn(self._report_loop())]
        if self.options.disconnect_every > 0:
            background.append(self.spawn(self._chaos()))
        if self.options.event_every > 0:
            background.append(self.spawn(self._heartbeats()))
        for device in self.devices:
            device._spawn_connect()
        try:
            await stop.wait()
        finally:
            await self._shutdown(background)
        return self.stats

    async def _shutdown(self, background: list[asyncio.Task[Any]]) -> None:
        self.stopping = True
        for task in background:
            task.cancel()
        # Let connects in flight finish, and their socket registrations land, before closing.
        await self.loop.run_in_executor(None, lambda: self.executor.shutdown(cancel_futures=True))
        await asyncio.sleep(0)
        for device in self.devices:
            device.close()
        self.sockets_open(0)
        # paho closes each socket once its offline status and DISCONNECT are written.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_closed.wait(), 5.0)
        for device in self.devices:
            device.detach()
        for task in list(self._tasks):
            task.cancel()
        self.report({"type": "stopped", **self.snapshot()})

    # bookkeeping

    def sockets_open(self, change: int) -> None:
        self._open_sockets += change
        if self.stopping and self._open_sockets <= 0:
            self._all_closed.set()

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

    async def _keepalive(self) -> None:
        """paho's ``loop_misc`` for every connected device once a second (PINGREQs, timeouts)."""
        while True:
            await asyncio.sleep(1.0)
            for n, device in enumerate(self.devices):
                # Connected: PINGREQs. Waiting for a CONNACK: paho gives up after a keepalive.
                if device.connected or (device.connecting and not device.in_executor):
                    device.client.loop_misc()
                if n % 1000 == 999:
                    await asyncio.sleep(0)

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
