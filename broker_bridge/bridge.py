"""The bridge: commands from the store to device topics; acks and presence back into the store.

One I/O thread (the MQTT session's) receives, commits and publishes: between network reads it
commits every store job waiting, and done-callbacks chain the steps. So an incoming message is
PUBACKed right after its commit, and a command is published right after its acceptance commits,
in commit order, which keeps each device's commands in acceptance order on the wire. Other
threads (the gateway's event loop, the sweeper) only queue store jobs. Async callers use the
``a*`` methods.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker_bridge.errors import BadRequest, NotFound, TetherError, Unavailable
from broker_bridge.latency import LatencyWindow, hops_of
from broker_bridge.mqtt_session import MqttSession, SessionSettings
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.provisioning import Provisioner
from broker_bridge.store import jobs
from broker_bridge.store.records import Record
from broker_bridge.store.shard import StoredEvent, StoreUnavailable
from broker_bridge.store.sharded import ShardedStore
from broker_bridge.sys_stats import SUBSCRIPTION as SYS_SUBSCRIPTION
from broker_bridge.sys_stats import BrokerFigures
from tether.protocol import (
    DEFAULT_PREFIX,
    CancelNotice,
    Channel,
    CommandMessage,
    CommandState,
    ProtocolError,
    Topics,
    decode_ack,
    decode_event,
    decode_status,
    format_time,
    new_command_id,
    parse_time,
)
from tether.settings import setting

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BridgeSettings:
    data_dir: Path
    mqtt: SessionSettings
    prefix: str = setting(DEFAULT_PREFIX, help="topic prefix")
    # None: from the store's manifest, or 8 for a new store
    shards: int | None = setting(
        None,
        default_text="8",
        help="shard count of a new store; an existing store keeps its own",
    )
    # OFF is left out on purpose: a crash could lose an accepted command
    synchronous: str = setting(
        "FULL", choices=("NORMAL", "FULL", "EXTRA"), help="SQLite synchronous level"
    )
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    sweep_interval: float = setting(1.0, help="seconds between delivery-policy sweeps")
    event_retention: int = 100_000  # events kept per shard
    store_retry_delay: float = 1.0  # wait before retrying an incoming message the store refused


def _now() -> datetime:
    return datetime.now(UTC)


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.policy = settings.policy
        self.stats: Counter[str] = Counter()
        self.latency = LatencyWindow()
        self.broker_figures = BrokerFigures()
        self._stats_lock = threading.Lock()
        # Published once subscribed: it comes back after every retained status the broker
        # replays for our subscriptions, which closes the start's presence check.
        self._sync_topic = f"{settings.prefix}/_bridge/sync/{settings.mqtt.client_id}"
        # One thread receives, commits and acknowledges: the session's I/O thread runs the
        # store's commits between network reads (see broker_bridge.mqtt_session).
        self.session = MqttSession(
            settings.mqtt,
            [
                *((self.topics.wildcard(c), 1) for c in (Channel.ACK, Channel.EVT, Channel.STATUS)),
                (SYS_SUBSCRIPTION, 0),  # Mosquitto's own figures, for /api/fleet and /metrics
                (self._sync_topic, 1),
            ],
            self._on_message,
            self._on_connected,
            work=lambda: self.store.drain_writes(),
        )
        self.store = ShardedStore(
            settings.data_dir,
            settings.shards,
            synchronous=settings.synchronous,
            wake=self.session.wake,
        )
        self.store.add_listener(self._observe)
        self.provisioner = Provisioner(
            self.store,
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.username,
            settings.mqtt.password,
            settings.prefix,
            clear_status=self._clear_status,
        )
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep_loop, name="bridge-sweeper", daemon=True
        )

    # lifecycle

    def start(self) -> None:
        for shard in range(self.store.shard_count):  # runs before any status is received
            self.store.write_shard(shard, jobs.begin_presence_check)
        self.session.start()
        for shard in range(self.store.shard_count):
            resumed = self.store.write_shard(
                shard, lambda tx: jobs.resume_queued(tx, _now(), self.policy)
            )
            resumed.add_done_callback(self._publish_all)
            resumed.result()
        self._sweeper.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._sweeper.is_alive():
            self._sweeper.join(10)
        self.provisioner.close()
        self.session.stop()
        self.store.close()

    def _observe(self, events: list[StoredEvent]) -> None:
        """Store listener (the committing thread, after commit): hop latencies, state counts."""
        for event in events:
            if event.kind == "command":
                record = event.data
                self.latency.record(record["state"], hops_of(record["state"], record["times"]))

    def count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    # commands in

    def send(
        self,
        device_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        command_id: str | None = None,
    ) -> Future[jobs.Accepted]:
        """Accept a command: committed as `queued` (with its event) before it is published.
        ``command_id``: one the caller made (:func:`tether.protocol.new_command_id`), so it can
        recognise the command's events before the answer comes back."""
        if ttl is not None and ttl <= 0:
            raise BadRequest("ttl must be a positive number of seconds")
        new = jobs.NewCommand(
            command_id or new_command_id(),
            device_id,
            name,
            args or {},
            ttl,
            idempotency_key,
            request_hash,
        )
        accepted = self.store.write(
            device_id, lambda tx: jobs.accept_command(tx, new, _now(), self.policy)
        )
        accepted.add_done_callback(self._publish_accepted)
        return accepted

    def _publish_accepted(self, accepted: Future[jobs.Accepted]) -> None:
        # Cancelled: the sender left before the store took it up, so it was never stored.
        if not accepted.cancelled() and accepted.exception() is None:
            delivery = accepted.result().delivery
            if delivery is not None:
                self._publish(delivery)

    def cancel(self, command_id: str) -> Future[Record]:
        """Cancel before delivery. The command's shard is unknown, so ask each in turn."""
        result: Future[Record] = Future()
        self._cancel_in_shard(command_id, 0, result)
        return result

    def _cancel_in_shard(self, command_id: str, shard: int, result: Future[Record]) -> None:
        attempt = self.store.write_shard(
            shard, lambda tx: jobs.cancel_command(tx, command_id, _now())
        )

        def done(f: Future[jobs.Cancelled]) -> None:
            error = f.exception()
            if error is None and f.result().notify_device:
                record = f.result().record
                self._notify_cancel(record["device"], record["id"])
            if result.cancelled():  # the caller left; the cancel itself may have happened
                return
            if isinstance(error, NotFound) and shard + 1 < self.store.shard_count:
                self._cancel_in_shard(command_id, shard + 1, result)
            elif error is not None:
                result.set_exception(error)
            else:
                result.set_result(f.result().record)

        attempt.add_done_callback(done)

    def _notify_cancel(self, device_id: str, command_id: str) -> None:
        """Tell a device that can honour it (``features: ["cancel"]``) that a command it may
        hold was cancelled; what it answers is kept on the record."""
        self.count("cancel_notices")
        notice = CancelNotice(command_id, format_time(_now()))
        self.session.publish(
            self.topics.cmd(device_id), notice.encode(), None, partial(self._log_failure, notice)
        )

    def _clear_status(self, device_id: str) -> None:
        """A login was replaced or revoked: the broker must not replay an old ``online``."""
        self.session.publish(
            self.topics.status(device_id),
            b"",
            None,
            partial(self._log_failure, device_id),
            retain=True,
        )

    @staticmethod
    def _log_failure(what: object, error: BaseException | None) -> None:
        if error is not None:
            log.warning("publish for %s failed: %s", what, error)

    # publishing

    def _publish(self, delivery: jobs.Delivery) -> None:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        props.ResponseTopic = self.topics.ack(delivery.device_id)
        props.CorrelationData = delivery.id.encode()
        if delivery.expires_at is not None:
            left = (parse_time(delivery.expires_at) - _now()).total_seconds()
            if left <= 0:
                return  # the sweeper ends it as expired
            props.MessageExpiryInterval = max(1, int(left))
        message = CommandMessage(
            delivery.id, delivery.name, delivery.issued_at, delivery.args, delivery.expires_at
        )
        self.count("published")
        self.session.publish(
            self.topics.cmd(delivery.device_id),
            message.encode(),
            props,
            partial(self._on_puback, delivery),
        )

    def _on_puback(self, delivery: jobs.Delivery, error: BaseException | None) -> None:
        if error is not None:
            log.warning("publish of %s failed: %s", delivery.id, error)
            return  # still due: the sweeper publishes it again
        self._write_retrying(
            delivery.device_id,
            lambda tx: jobs.transition(
                tx, delivery.id, CommandState.SENT, _now(), policy=self.policy
            ),
        )

    def _publish_all(self, deliveries: Future[list[jobs.Delivery]]) -> None:
        if deliveries.exception() is None:
            for delivery in deliveries.result():
                self._publish(delivery)

    # messages from devices (the session's I/O thread)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if message.topic.startswith("$SYS/"):
            self.broker_figures.offer(message.topic, bytes(message.payload))
            return
        if message.topic == self._sync_topic:
            self.session.ack(message)
            for shard in range(self.store.shard_count):
                self.store.write_shard(shard, lambda tx: jobs.end_presence_check(tx, _now()))
            return
        try:
            ref = self.topics.parse(message.topic)
        except ProtocolError:
            self.count("ignored_topic")
            self.session.ack(message)
            return
        try:
            if ref.channel is Channel.ACK:
                self._on_ack(ref.device_id, message)
            elif ref.channel is Channel.STATUS:
                self._on_status(ref.device_id, message)
            elif ref.channel is Channel.EVT:
                self._on_event(ref.device_id, message)
            else:
                self.session.ack(message)
        except ProtocolError as exc:
            log.warning("malformed %s from %s: %s", ref.channel.value, ref.device_id, exc)
            self.count(f"malformed_{ref.channel.value}")
            self.session.ack(message)  # redelivery cannot mend it

    def _on_ack(self, device_id: str, message: mqtt.MQTTMessage) -> None:
        ack = decode_ack(message.payload)

        def apply(tx: Any) -> jobs.Transition:
            return jobs.record_ack(tx, device_id, ack, _now(), self.policy)

        def done(outcome: jobs.Transition) -> None:
            if outcome.verdict is None:
                self.count("ignored_ack")
                log.info("ignored ack from %s for %s: %s", device_id, ack.id, outcome.reason)
            elif outcome.late:
                self.count("late_outcomes")
                log.info(
                    "late %s from %s for %s, kept on the record", ack.status, device_id, ack.id
                )
            elif not outcome.applied:
                self.count(f"ack_{outcome.verdict.value}")

        self._write_retrying(device_id, apply, message, done)

    def _on_status(self, device_id: str, message: mqtt.MQTTMessage) -> None:
        if not message.payload:  # a cleared retained status: nothing to record
            self.session.ack(message)
            return
        status = decode_status(message.payload)

        def done(change: jobs.PresenceChange) -> None:
            if not change.known:
                self.count("ignored_status")
            elif change.came_online:
                redeliver = self.store.write(
                    device_id, lambda tx: jobs.redeliver_device(tx, device_id, _now(), self.policy)
                )
                redeliver.add_done_callback(self._publish_all)

        self._write_retrying(
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

    def _on_event(self, device_id: str, message: mqtt.MQTTMessage) -> None:
        event = decode_event(message.payload)

        def done(known: bool) -> None:
            if not known:
                self.count("ignored_event")

        self._write_retrying(
            device_id,
            lambda tx: jobs.record_device_event(
                tx, device_id, event.name, event.data, event.at, _now()
            ),
            message,
            done,
        )

    def _write_retrying(
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
                self.count("store_retries")
                if not self._stopping.is_set():
                    timer = threading.Timer(
                        self.settings.store_retry_delay,
                        self._write_retrying,
                        (device_id, fn, message, then),
                    )
                    timer.daemon = True
                    timer.start()
                return
            if error is not None:
                log.error("storing a message from %s failed: %r", device_id, error)
                self.count("store_errors")
            elif then is not None:
                then(value)
            if message is not None:
                self.session.ack(message)

        self.store.write_then(device_id, fn, done)

    def _on_connected(self, session_present: bool) -> None:
        """I/O thread. After a reconnect the broker may have lost what it held (a killed broker
        keeps only its last autosave, and loses Last Wills), so every online device gets its
        undelivered commands again, in order; devices drop what they already ran."""
        self.count("connects")
        if self.stats["connects"] == 1:
            # After the SUBSCRIBE on the wire: it returns behind every retained status.
            self.session.publish(self._sync_topic, b"", None, partial(self._log_failure, "sync"))
            return  # the first connect: start() resumes from the store
        for shard in range(self.store.shard_count):
            again = self.store.write_shard(
                shard, lambda tx: jobs.redeliver_online(tx, _now(), self.policy)
            )
            again.add_done_callback(self._publish_all)

    # the delivery policy's clock

    def sweep_once(self) -> list[Future[list[jobs.Delivery]]]:
        futures = []
        for shard in range(self.store.shard_count):
            future = self.store.write_shard(
                shard, lambda tx: jobs.sweep_due(tx, _now(), self.policy)
            )
            future.add_done_callback(self._publish_all)
            futures.append(future)
        return futures

    def _sweep_loop(self) -> None:
        sweeps = 0
        while not self._stopping.wait(self.settings.sweep_interval):
            if not self.session.connected.is_set():
                continue
            for future in self.sweep_once():
                try:
                    future.result(timeout=30)
                except Exception as exc:
                    log.warning("sweep failed: %s", exc)
            sweeps += 1
            if sweeps % 60 == 0:
                for shard in range(self.store.shard_count):
                    self.store.write_shard(
                        shard, lambda tx: jobs.prune_events(tx, self.settings.event_retention)
                    )

    # async façade for the gateway

    async def asend(
        self, device_id: str, name: str, args: dict[str, Any] | None = None, **kw: Any
    ) -> jobs.Accepted:
        try:
            return await asyncio.wrap_future(self.send(device_id, name, args, **kw))
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from exc

    async def aprovision(self, device_id: str) -> tuple[Record, str]:
        return await asyncio.to_thread(self.provisioner.provision, device_id)

    async def arotate(self, device_id: str) -> tuple[Record, str]:
        return await asyncio.to_thread(self.provisioner.rotate, device_id)

    async def arevoke(self, device_id: str) -> Record:
        return await asyncio.to_thread(self.provisioner.revoke, device_id)

    async def acancel(self, command_id: str) -> Record:
        try:
            return await asyncio.wrap_future(self.cancel(command_id))
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from exc


__all__ = ["Bridge", "BridgeSettings", "TetherError"]
