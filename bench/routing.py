"""Bench: how a shard group's owner gets its devices' reports, per-device subscriptions or a
wildcard with filtering (issue 15 asks to measure both before choosing).

One Mosquitto with Tether's config. ``--devices`` device ids are dealt into 2 groups as the
store does (``blake2b(id) mod 8`` shards, ``shard mod 2`` groups). A publisher sends
``--messages`` QoS 1 acks spread over every device; an owner of group 0 receives them:

- **per-device**: one persistent session subscribed to ``tether/<id>/+`` (No Local) for each of
  its devices: the broker delivers only its own.
- **wildcard**: subscribed to ``tether/+/ack``: it receives every device's acks and drops the
  other group's.

Reported: the broker's memory for the per-device subscriptions, and for each way the CPU of the
owner's receiving thread per message it keeps, and the broker's CPU per published message.

    .venv/bin/python bench/routing.py [--devices 10000] [--messages 20000]
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from _common import (
    ADMIN_USER,
    PREFIX,
    Harness,
    cpu_seconds,
    device_ids,
    emit,
    log,
    machine_facts,
    rss_mib,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker_bridge.sharding import shard_for

SHARDS, GROUPS = 8, 2


def group_of(device_id: str) -> int:
    return shard_for(device_id, SHARDS) % GROUPS


class Client:
    """A paho MQTT 5 client on its own loop thread, TCP_NODELAY, counting what it receives."""

    def __init__(self, port: int, password: str, client_id: str, persistent: bool) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(ADMIN_USER, password)
        self.client.max_inflight_messages_set(1000)
        self.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(6, 1, 1)  # NODELAY
        self.connected = threading.Event()
        self.client.on_connect = lambda *_: self.connected.set()
        self.subacks = 0
        self.client.on_subscribe = self._suback
        self.port, self.persistent = port, persistent
        self.thread_cpu: Callable[[], float] = lambda: 0.0

    def _suback(self, *_: Any) -> None:
        self.subacks += 1

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600 if self.persistent else 0
        props.ReceiveMaximum = 1000
        self.client.connect("127.0.0.1", self.port, clean_start=True, properties=props)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"
        thread = self.client._thread
        assert thread is not None and thread.ident is not None
        clock = time.pthread_getcpuclockid(thread.ident)
        self.thread_cpu = lambda: time.clock_gettime(clock)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)  # a bench waiting on counters


def run_mode(
    mode: str, port: int, password: str, broker_pid: int, ids: list[str], messages: int
) -> dict[str, Any]:
    own_ids = [d for d in ids if group_of(d) == 0]
    owner = Client(port, password, f"routing-owner-{mode}", persistent=True)
    kept = dropped = 0

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal kept, dropped
        device_id = message.topic.split("/")[1]
        if group_of(device_id) == 0:  # the owner's check, in both modes
            kept += 1
        else:
            dropped += 1

    owner.client.on_message = on_message
    owner.start()
    rss_before = rss_mib(broker_pid)
    if mode == "per-device":
        filters = [(f"{PREFIX}/{d}/+", SubscribeOptions(qos=1, noLocal=True)) for d in own_ids]
        batches = [filters[i : i + 500] for i in range(0, len(filters), 500)]
    else:
        batches = [[(f"{PREFIX}/+/ack", SubscribeOptions(qos=1))]]
    for batch in batches:
        owner.client.subscribe(batch)
    wait(lambda: owner.subacks == len(batches), 60, "SUBACKs")
    time.sleep(1.0)  # let the broker's heap settle before reading its RSS
    rss_after = rss_mib(broker_pid)

    publisher = Client(port, password, f"routing-publisher-{mode}", persistent=False)
    publisher.start()
    expected_own = sum(1 for n in range(messages) if group_of(ids[n % len(ids)]) == 0)
    cpu0, broker0, t0 = owner.thread_cpu(), cpu_seconds(broker_pid), time.monotonic()
    for n in range(messages):
        publisher.client.publish(
            f"{PREFIX}/{ids[n % len(ids)]}/ack", b'{"id":"x","status":"succeeded"}', qos=1
        )
    wait(lambda: kept >= expected_own, 120, f"{mode}: the owner's acks")
    if mode == "wildcard":
        wait(lambda: kept + dropped >= messages, 60, "every ack at the wildcard owner")
    wall = time.monotonic() - t0
    owner_cpu = owner.thread_cpu() - cpu0
    broker_cpu = cpu_seconds(broker_pid) - broker0
    publisher.stop()
    owner.stop()
    return {
        "mode": mode,
        "subscriptions": sum(len(b) for b in batches),
        "broker_rss_mib_for_subscriptions": round(rss_after - rss_before, 2),
        "broker_kib_per_subscription": round((rss_after - rss_before) * 1024 / len(own_ids), 3)
        if mode == "per-device"
        else None,
        "messages_published": messages,
        "owner_received": kept + dropped,
        "owner_kept": kept,
        "owner_dropped": dropped,
        "owner_cpu_us_per_kept_message": round(owner_cpu * 1e6 / max(1, kept), 1),
        "owner_cpu_us_per_received_message": round(owner_cpu * 1e6 / max(1, kept + dropped), 1),
        "broker_cpu_us_per_published_message": round(broker_cpu * 1e6 / messages, 1),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ids = device_ids(args.devices)
    with Harness("routing") as harness:
        broker = harness.broker()
        results = []
        for round_ in range(args.rounds):
            for mode in (
                ("per-device", "wildcard") if round_ % 2 == 0 else ("wildcard", "per-device")
            ):
                log(f"round {round_ + 1}: {mode}")
                result = run_mode(
                    mode, broker.port, broker.admin_password, broker.pid, ids, args.messages
                )
                log(f"  {result}")
                results.append({"round": round_ + 1, **result})
        emit(
            {
                "bench": "routing",
                "machine": machine_facts(),
                "devices": args.devices,
                "results": results,
            }
        )


if __name__ == "__main__":
    main()
