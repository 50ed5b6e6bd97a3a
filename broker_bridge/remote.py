"""The command service for a gateway process: shard owners over the broker, reads from the files.

A gateway writes nothing. Commands and device administration go as MQTT 5 requests to the
worker that owns the device's shard group (``P/_bridge/req/<group>``) and come back on this
gateway's response topic; reads, catch-up and gap repair open the shards read-only; live
events come from the owners' ``P/_bridge/events/<shard>`` through a :class:`LiveFeed`.
Any gateway can serve any client: cursors are positions in the shards, not in a gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker_bridge.counters import Counters
from broker_bridge.errors import TetherError, Unavailable
from broker_bridge.event_log import current_cursor
from broker_bridge.hub import EventHub
from broker_bridge.latency import LatencyWindow, hop_histograms
from broker_bridge.live_feed import LiveFeed
from broker_bridge.mqtt_session import MqttSession, SessionSettings
from broker_bridge.ownership import group_of
from broker_bridge.reads import StoreReads
from broker_bridge.store.sharded import StoreConfigError, StoreReader, read_manifest
from broker_bridge.stream import event_stream
from broker_bridge.sys_stats import SUBSCRIPTION as SYS_SUBSCRIPTION
from broker_bridge.sys_stats import BrokerFigures
from tether.protocol import ProtocolError
from tether.protocol.cursor import Cursor
from tether.protocol.internal import Answer, InternalTopics, Request, decode_answer, decode_events
from tether.protocol.service import (
    Accepted,
    Figures,
    Health,
    NewCommand,
    Positioned,
    Record,
    Reset,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RemoteSettings:
    data_dir: Path
    mqtt: SessionSettings  # the service login; client_id is made unique per gateway
    prefix: str = "tether"
    request_timeout: float = 10.0  # then 503: no owner answered
    store_wait: float = 60.0  # at start: wait this long for the workers to create the store
    owner_stale: float = 10.0  # an owner status older than this does not count as an owner


class RemoteService(StoreReads):
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.internal = InternalTopics(settings.prefix)
        self.gateway_id = f"gw-{uuid.uuid4().hex[:12]}"
        self.counters = Counters()
        self.broker_figures = BrokerFigures()
        self._owners: dict[int, dict[str, Any]] = {}
        self._owners_lock = threading.Lock()
        self._pending: dict[bytes, asyncio.Future[Answer]] = {}
        self._response_topic = self.internal.response(self.gateway_id)
        mqtt_settings = replace(
            settings.mqtt,
            client_id=f"{settings.mqtt.client_id}-{self.gateway_id}",
            session_expiry=0,  # nothing is kept for a gateway that is gone
        )
        self.session = MqttSession(
            mqtt_settings,
            [
                (self._response_topic, 1),
                (self.internal.all_events, 1),
                (self.internal.all_owners, 1),
                (SYS_SUBSCRIPTION, 0),
            ],
            self._on_message,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hub: EventHub | None = None
        self._feed: LiveFeed | None = None

    # lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        reader, heads = await self._open_store()
        super().__init__(reader)
        self._hub = EventHub(self._loop)
        self._feed = LiveFeed(reader, self._hub, heads)
        self._feed.start()
        await asyncio.to_thread(self.session.start)

    async def _open_store(self) -> tuple[StoreReader, list[int]]:
        """The store and each shard's last event. The workers create the store and its shards:
        a gateway started with them waits until it can read every shard."""
        data_dir = self.settings.data_dir
        deadline = time.monotonic() + self.settings.store_wait
        reader: StoreReader | None = None
        while True:
            try:
                if reader is None and read_manifest(data_dir) is not None:
                    reader = StoreReader(data_dir)
                if reader is not None:
                    return reader, list((await current_cursor(reader)).positions)
                problem = f"no store in {data_dir}: start a worker"
            except sqlite3.Error as exc:
                problem = f"the store in {data_dir} cannot be read: {exc}"
            if time.monotonic() > deadline:
                raise StoreConfigError(problem)
            await asyncio.sleep(0.2)  # another process is creating it

    async def stop(self) -> None:
        await asyncio.to_thread(self.session.stop)
        if self._feed is not None:
            await self._feed.stop()
        for future in self._pending.values():
            future.cancel()
        if hasattr(self, "reader"):
            await asyncio.to_thread(self.reader.close)  # joins the read pool: not on the loop

    # MQTT (the session's I/O thread)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        self.session.ack(message)
        topic = message.topic
        loop = self._loop
        assert loop is not None
        try:
            if topic == self._response_topic:
                correlation = getattr(message.properties, "CorrelationData", None)
                answer = decode_answer(bytes(message.payload))
                loop.call_soon_threadsafe(self._answered, correlation, answer)
            elif topic.startswith(self.internal.base + "/events/"):
                shard = self.internal.number_in(topic, "events")
                events = decode_events(shard, bytes(message.payload))
                assert self._feed is not None
                loop.call_soon_threadsafe(self._feed.heard, shard, events)
            elif topic.startswith(self.internal.base + "/owners/"):
                self._owner_status(self.internal.number_in(topic, "owners"), bytes(message.payload))
            elif topic.startswith("$SYS/"):
                self.broker_figures.offer(topic, bytes(message.payload))
        except (ProtocolError, ValueError, UnicodeDecodeError) as exc:
            self.counters.count("malformed_internal")
            log.warning("dropped a malformed message on %s: %s", topic, exc)

    def _owner_status(self, group: int, payload: bytes) -> None:
        status = json.loads(payload) if payload else None
        if status is not None and not isinstance(status, dict):
            raise ValueError("an owner status must be a JSON object")
        with self._owners_lock:
            if status is None:
                self._owners.pop(group, None)
                return
            status["heard"] = time.monotonic()
            self._owners[group] = status
        feed, loop = self._feed, self._loop
        if feed is not None and loop is not None:
            for shard, seq in status.get("heads", {}).items():
                loop.call_soon_threadsafe(feed.head, int(shard), int(seq))

    def _answered(self, correlation: bytes | None, answer: Answer) -> None:
        future = self._pending.get(correlation or b"")
        if future is not None and not future.done():
            future.set_result(answer)

    # requests to the owners

    async def _ask(self, request: Request) -> Answer:
        """One request to the owner of the device's group; the answer, or Unavailable."""
        group = group_of(self.reader.shard_of(request.device_id), self.reader.groups)
        correlation = uuid.uuid4().bytes
        assert self._loop is not None
        future: asyncio.Future[Answer] = self._loop.create_future()
        self._pending[correlation] = future
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ResponseTopic = self._response_topic
        props.CorrelationData = correlation
        props.MessageExpiryInterval = max(1, int(request.deadline - time.time()) + 1)

        def published(error: BaseException | None) -> None:
            if error is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(_fail, future, error)

        try:
            self.session.publish(self.internal.request(group), request.encode(), props, published)
            wait = request.deadline - time.time() + 1.0  # the owner refuses after the deadline
            answer = await asyncio.wait_for(future, max(0.1, wait))
        except (TimeoutError, ConnectionError) as exc:
            self.counters.count("requests_unanswered")
            raise Unavailable(
                f"no worker answered for shard group {group} within "
                f"{self.settings.request_timeout:g} s: nothing was changed unless a retry "
                "with the same Idempotency-Key finds it"
            ) from exc
        finally:
            self._pending.pop(correlation, None)
        if not answer.ok:
            # the owner's error, with its code and HTTP status, passed on as it is
            raise TetherError(answer.message, code=answer.code, status=answer.status)
        return answer

    def _deadline(self) -> float:
        return time.time() + self.settings.request_timeout

    async def send(self, command: NewCommand) -> Accepted:
        answer = await self._ask(
            Request("send", command.device_id, self._deadline(), command=command)
        )
        return Accepted(answer.record_json, answer.created)

    async def cancel(self, command_id: str) -> Record:
        record = await self.command(command_id)  # NotFound, or which device it is for
        answer = await self._ask(
            Request("cancel", record["device"], self._deadline(), command_id=command_id)
        )
        return _record(answer)

    async def provision(self, device_id: str) -> tuple[Record, str]:
        answer = await self._ask(Request("provision", device_id, self._deadline()))
        return _record(answer), answer.password or ""

    async def rotate(self, device_id: str) -> tuple[Record, str]:
        answer = await self._ask(Request("rotate", device_id, self._deadline()))
        return _record(answer), answer.password or ""

    async def revoke(self, device_id: str) -> Record:
        return _record(await self._ask(Request("revoke", device_id, self._deadline())))

    # figures

    def owners(self) -> list[dict[str, Any]]:
        """The live owner of each group, as it last reported, with how far this gateway's
        live feed is behind it."""
        now = time.monotonic()
        with self._owners_lock:
            owners = {g: dict(s) for g, s in self._owners.items()}
        feed = self._feed
        out: list[dict[str, Any]] = []
        for group in range(self.reader.groups):
            status = owners.get(group)
            if status is None:
                out.append({"group": group, "owner": None})
                continue
            heads = {int(k): int(v) for k, v in status.pop("heads", {}).items()}
            lag: dict[str, int | None] = {
                str(shard): max(0, seq - feed.last[shard]) if feed else None
                for shard, seq in heads.items()
            }
            age = now - status.pop("heard")
            counters = status.pop("counters", {})
            status.pop("latency", None)
            out.append(
                {
                    **status,
                    "owner": status.get("worker"),
                    "status_age_seconds": round(age, 1),
                    "stale": age > self.settings.owner_stale,
                    "events_behind": lag,
                    "messages": counters,
                }
            )
        return out

    def _latency(self) -> LatencyWindow:
        """The owners' latency windows, merged (each owner measures its own commands)."""
        with self._owners_lock:
            exports = [s.get("latency") or {} for s in self._owners.values()]
        window = LatencyWindow()
        for exported in exports:
            window.absorb(exported)
        return window

    async def figures(self) -> Figures:
        owners = self.owners()
        latency = self._latency()
        counters = Counters()
        for owner in owners:
            for key, value in owner.get("messages", {}).items():
                counters.count(key, value)
        for key, value in self.counters.snapshot().items():
            counters.count(key, value)
        if self._feed is not None:
            counters.count("gap_repairs", self._feed.repairs)
        if self._hub is not None:
            counters.count("stream_catch_ups", self._hub.catch_ups)
        return Figures(
            broker_connected=self.session.connected.is_set(),
            broker=self.broker_figures.snapshot(),
            counters=counters.snapshot(),
            latency=latency.summary(),
            hops=hop_histograms(latency),
            workers=[{k: v for k, v in o.items() if k != "messages"} for o in owners],
        )

    async def health(self) -> Health:
        owned = all(o["owner"] is not None and not o["stale"] for o in self.owners())
        broker = self.session.connected.is_set() and owned
        return Health(broker=broker, store=await self.store_ok())

    # the event stream

    def events(
        self, cursor: Cursor, *, live_buffer: int, page: int
    ) -> AsyncGenerator[Positioned | Reset, None]:
        assert self._hub is not None, "start() first"
        return event_stream(self.reader, self._hub, cursor, live_buffer=live_buffer, page=page)

    @property
    def live_subscribers(self) -> int:
        return self._hub.subscriber_count if self._hub else 0


def _record(answer: Answer) -> Record:
    record: Record = json.loads(answer.record_json)
    return record


def _fail(future: asyncio.Future[Answer], error: BaseException) -> None:
    if not future.done():
        future.set_exception(ConnectionError(str(error)))
