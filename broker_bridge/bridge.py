"""One shard group's owner: its shards' store writers and its persistent MQTT session.

A bridge owns one group of the store's shards (see :mod:`broker_bridge.ownership`) and is the
only writer of them. It subscribes to each of its devices' topics (``P/<device>/+``, No Local)
and to its group's request topic, so the broker routes exactly its devices' reports and its
gateways' requests to it; it publishes commands to devices, and each commit's events for the
gateways.

One I/O thread (the MQTT session's) receives, commits and publishes: between network reads it
commits every store job waiting, and done-callbacks chain the steps. So an incoming message is
PUBACKed right after its commit, and a command is published right after its acceptance commits,
in commit order, which keeps each device's commands in acceptance order on the wire. Other
threads (the sweeper, device administration) only queue store jobs.

The parts, built in this order: the session, the store (committing on the session's thread),
then :class:`~broker_bridge.outbound.Outbound` (publishing), :class:`~broker_bridge.inbound.
Inbound` (device reports), :class:`~broker_bridge.requests.RequestHandler` (gateways'
requests) and :class:`~broker_bridge.sweeper.Sweeper` (the policy's clock).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker_bridge.counters import Counters
from broker_bridge.errors import BadRequest, NotFound, TetherError
from broker_bridge.inbound import Inbound
from broker_bridge.latency import LatencyWindow, hops_of
from broker_bridge.mqtt_session import MqttSession, SessionSettings
from broker_bridge.outbound import Outbound, log_failure
from broker_bridge.ownership import group_client_id, shards_of
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.provisioning import Provisioner
from broker_bridge.requests import RequestHandler
from broker_bridge.store import jobs
from broker_bridge.store.queries import list_devices
from broker_bridge.store.records import Record
from broker_bridge.store.sharded import ShardedStore, open_layout
from broker_bridge.store_retry import StoreRetry
from broker_bridge.sweeper import Sweeper
from broker_bridge.sys_stats import SUBSCRIPTION as SYS_SUBSCRIPTION
from broker_bridge.sys_stats import BrokerFigures
from tether.protocol import DEFAULT_PREFIX, Topics, format_time, new_command_id
from tether.protocol.internal import InternalTopics
from tether.protocol.service import NewCommand, StoredEvent
from tether.settings import setting

log = logging.getLogger(__name__)


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
    # None: from the store's manifest, or 2 for a new store
    groups: int | None = setting(
        None,
        default_text="2",
        help="shard groups of a new store, each owned by one bridge worker at a time; "
        "an existing store keeps its own",
    )
    group: int = 0  # the shard group this bridge owns
    worker: str = ""  # the worker's name, in the owner status
    status_interval: float = 2.0  # the owner status, for gateways and `tether status`
    event_retention: int = 100_000  # events kept per shard
    store_retry_delay: float = 1.0  # wait before retrying an incoming message the store refused


def _now() -> datetime:
    return datetime.now(UTC)


def device_filter(topics: Topics, device_id: str) -> tuple[str, SubscribeOptions]:
    """A device's reports (ack, evt, status), not what this session itself publishes there."""
    return f"{topics.prefix}/{device_id}/+", SubscribeOptions(qos=1, noLocal=True)


class Bridge:
    def __init__(self, settings: BridgeSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.internal = InternalTopics(settings.prefix)
        self.policy = settings.policy
        self.stats = Counters()
        self.latency = LatencyWindow()
        self.broker_figures = BrokerFigures()
        self.started_at = time.time()
        self._stopping = threading.Event()
        self._heads: dict[int, int] = {}
        shard_count, groups = open_layout(settings.data_dir, settings.shards, settings.groups)
        if not 0 <= settings.group < groups:
            raise ValueError(f"group {settings.group} is not one of the store's {groups}")
        self.group = settings.group
        owned = shards_of(settings.group, groups, shard_count)
        # One persistent session per group, whoever owns it: a new owner gets what queued.
        client_id = group_client_id(settings.mqtt.client_id, settings.group)
        # Published once subscribed: it comes back after every retained status the broker
        # replays for our subscriptions, which closes the start's presence check.
        self._sync_topic = self.internal.sync(client_id)
        self._request_topic = self.internal.request(settings.group)
        self.session = MqttSession(
            replace(settings.mqtt, client_id=client_id),
            [
                (self._request_topic, 1),
                (SYS_SUBSCRIPTION, 0),  # Mosquitto's own figures, for /api/fleet and /metrics
                (self._sync_topic, 1),
            ],
            self._on_message,
            self._on_connected,
            will=(self.internal.owner(settings.group), b""),
        )
        try:
            self.store = ShardedStore(
                settings.data_dir,
                settings.shards,
                synchronous=settings.synchronous,
                wake=self.session.wake,
                groups=groups,
                owned=owned,
            )
        except BaseException:
            self.session.stop()  # never started: this closes its sockets
            raise
        # The session's I/O thread runs the store's commits between network reads.
        self.session.work = self.store.drain_writes
        self.retry = StoreRetry(
            self.store, self.session, self.stats, settings.store_retry_delay, self._stopping
        )
        self.outbound = Outbound(
            self.session,
            self.store,
            self.topics,
            self.internal,
            self.policy,
            self.stats,
            self.retry,
        )
        self.inbound = Inbound(
            self.session,
            self.store,
            self.topics,
            self.policy,
            self.stats,
            self.retry,
            self.outbound,
        )
        self.provisioner = Provisioner(
            self.store,
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.username,
            settings.mqtt.password,
            settings.prefix,
            clear_status=self.outbound.clear_status,
            watch=self.watch_device,
        )
        self.requests = RequestHandler(self, self.outbound, self.internal, self.stats)
        self.store.add_listener(self._observe)
        self.store.add_listener(self.outbound.events)
        self.sweeper = Sweeper(
            self.store,
            self.outbound,
            self.policy,
            self.session.connected,
            interval=settings.sweep_interval,
            event_retention=settings.event_retention,
            heartbeat=self.publish_status,
            heartbeat_every=round(settings.status_interval / settings.sweep_interval),
        )

    # lifecycle

    def start(self) -> None:
        for shard in self.store.owned:  # runs before any status is received
            self.store.write_shard(shard, jobs.begin_presence_check)
        devices = [
            device["id"]
            for shard in self.store.owned
            for device in self.store.read(shard, list_devices).result()
        ]
        self.session.subscribe([device_filter(self.topics, d) for d in devices])
        self.session.start()
        for shard in self.store.owned:
            resumed = self.store.write_shard(
                shard, lambda tx: jobs.resume_queued(tx, _now(), self.policy)
            )
            resumed.add_done_callback(self._deliver)
            resumed.result()
        self.requests.open()  # after the resumed commands went out: new ones come after them
        self.publish_status()
        self.sweeper.start()

    def stop(self) -> None:
        self._stopping.set()
        self.sweeper.stop()
        self.requests.close()
        self.provisioner.close()
        self.session.publish(self.internal.owner(self.group), b"", None, _ignore, retain=True)
        self.session.stop()
        self.store.close()

    def watch_device(self, device_id: str) -> None:
        """Route a (new) device's reports to this owner."""
        self.session.subscribe([device_filter(self.topics, device_id)])

    def _observe(self, events: list[StoredEvent]) -> None:
        """Store listener (the committing thread, after commit): hop latencies, heads."""
        for event in events:
            self._heads[event.shard] = event.seq
            if event.kind == "command":
                record = event.data
                self.latency.record(record["state"], hops_of(record["state"], record["times"]))

    def count(self, key: str, n: int = 1) -> None:
        self.stats.count(key, n)

    def status(self) -> dict[str, Any]:
        """What gateways and ``tether status`` show of this owner."""
        return {
            "group": self.group,
            "worker": self.settings.worker or f"pid-{os.getpid()}",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "client_id": self.session.settings.client_id,
            "shards": list(self.store.owned),
            "since": format_time(datetime.fromtimestamp(self.started_at, UTC)),
            "at": format_time(_now()),
            "heads": {str(shard): seq for shard, seq in self._heads.items()},
            "counters": self.stats.snapshot(),
            "latency": self.latency.export(),
        }

    def publish_status(self) -> None:
        self.outbound.owner_status(self.status(), partial(log_failure, "owner status"))

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
        new = NewCommand(
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
        accepted.add_done_callback(self._deliver_accepted)
        return accepted

    def _deliver_accepted(self, accepted: Future[jobs.Accepted]) -> None:
        # Cancelled: the sender left before the store took it up, so it was never stored.
        if not accepted.cancelled() and accepted.exception() is None:
            delivery = accepted.result().delivery
            if delivery is not None:
                self.outbound.deliver(delivery)

    def cancel_on(self, device_id: str, command_id: str) -> Future[Record]:
        """Cancel a command of ``device_id`` before delivery."""
        return self._cancel_in(self.store.shard_of(device_id), command_id)

    def cancel(self, command_id: str) -> Future[Record]:
        """Cancel before delivery when the device is not known: ask each owned shard in turn."""
        result: Future[Record] = Future()
        self._cancel_in_shard(command_id, 0, result)
        return result

    def _cancel_in(self, shard: int, command_id: str) -> Future[Record]:
        result: Future[Record] = Future()
        attempt = self.store.write_shard(
            shard, lambda tx: jobs.cancel_command(tx, command_id, _now())
        )

        def done(f: Future[jobs.Cancelled]) -> None:
            error = f.exception()
            if error is None and f.result().notify_device:
                record = f.result().record
                self.outbound.cancel_notice(record["device"], record["id"])
            if result.cancelled():  # the caller left; the cancel itself may have happened
                return
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(f.result().record)

        attempt.add_done_callback(done)
        return result

    def _cancel_in_shard(self, command_id: str, index: int, result: Future[Record]) -> None:
        shards = self.store.owned
        attempt = self._cancel_in(shards[index], command_id)

        def done(f: Future[Record]) -> None:
            if result.cancelled():
                return
            error = f.exception()
            if isinstance(error, NotFound) and index + 1 < len(shards):
                self._cancel_in_shard(command_id, index + 1, result)
            elif error is not None:
                result.set_exception(error)
            else:
                result.set_result(f.result())

        attempt.add_done_callback(done)

    # messages (the session's I/O thread)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        if topic.startswith("$SYS/"):
            self.broker_figures.offer(topic, bytes(message.payload))
        elif topic == self._request_topic:
            self.requests.handle(message)
        elif topic == self._sync_topic:
            self.session.ack(message)
            for shard in self.store.owned:
                self.store.write_shard(shard, lambda tx: jobs.end_presence_check(tx, _now()))
        else:
            self.inbound.device_message(message)

    def _on_connected(self, session_present: bool) -> None:
        """I/O thread. After a reconnect the broker may have lost what it held (a killed broker
        keeps only its last autosave, and loses Last Wills), so every online device gets its
        undelivered commands again, in order; devices drop what they already ran."""
        self.count("connects")
        if self.stats["connects"] == 1:
            # After the SUBSCRIBE on the wire: it returns behind every retained status.
            self.session.publish(self._sync_topic, b"", None, partial(log_failure, "sync"))
            return  # the first connect: start() resumes from the store
        for shard in self.store.owned:
            again = self.store.write_shard(
                shard, lambda tx: jobs.redeliver_online(tx, _now(), self.policy)
            )
            again.add_done_callback(self._deliver)

    def _deliver(self, deliveries: Future[list[jobs.Delivery]]) -> None:
        if deliveries.exception() is None:
            self.outbound.deliver_all(deliveries.result())

    def sweep_once(self) -> list[Future[list[jobs.Delivery]]]:
        return self.sweeper.sweep_once()


def _ignore(error: BaseException | None) -> None:
    pass


__all__ = ["Bridge", "BridgeSettings", "TetherError"]
