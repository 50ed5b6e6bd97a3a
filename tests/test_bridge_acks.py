"""Acks from devices through a real broker into the bridge: forged, malformed, late, duplicated."""

from __future__ import annotations

import json
import threading

import pytest

from tests.support.bridges import BridgeHandle
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until
from tether.protocol import AckMessage, AckStatus, decode_command, new_command_id, utc_now

pytestmark = pytest.mark.broker


def connect_device(broker: BrokerHandle, creds: Credentials) -> ProbeClient:
    device = broker.device_client(creds, persistent=True).connect_ok()
    assert not any(r.is_failure for r in device.subscribe(f"tether/{creds.device_id}/cmd"))
    return device


def ack(
    device: ProbeClient, device_id: str, command_id: str, status: AckStatus, **kw: object
) -> None:
    device.publish(
        f"tether/{device_id}/ack",
        AckMessage(command_id, status, utc_now(), **kw).encode(),  # type: ignore[arg-type]
    )


def test_command_round_trip_records_every_hop(broker: BrokerHandle, bridge: BridgeHandle) -> None:
    (creds,) = bridge.provision("dev-a")
    device = connect_device(broker, creds)
    accepted = bridge.bridge.send("dev-a", "echo", {"x": 1}).result(10)
    command = decode_command(device.next_message().payload)
    assert (command.id, command.name, command.args) == (accepted.record["id"], "echo", {"x": 1})
    ack(device, "dev-a", command.id, AckStatus.RECEIVED)
    ack(device, "dev-a", command.id, AckStatus.SUCCEEDED, result={"x": 1})
    wait_until(lambda: bridge.state(command.id) == "succeeded", what="succeeded")
    record = bridge.command(command.id)
    assert record["result"] == {"x": 1}
    assert list(record["times"]) == ["queued", "sent", "delivered", "succeeded"]
    times = list(record["times"].values())
    assert times == sorted(times)


def test_one_thread_receives_commits_and_publishes(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    """The design the bridge's throughput rests on: the MQTT session's I/O thread commits every
    change (acks it received, and commands sent from other threads), so nothing crosses threads
    between receiving an ack, storing it and acknowledging it."""
    (creds,) = bridge.provision("dev-a")
    device = connect_device(broker, creds)
    committers: list[tuple[str, str]] = []
    bridge.bridge.store.add_listener(
        lambda events: committers.extend(
            (json.loads(e.data_json)["state"], threading.current_thread().name)
            for e in events
            if e.kind == "command"
        )
    )
    accepted = bridge.bridge.send("dev-a", "echo").result(10)  # from this (test) thread
    command = decode_command(device.next_message().payload)
    assert command.id == accepted.record["id"]
    ack(device, "dev-a", command.id, AckStatus.RECEIVED)
    ack(device, "dev-a", command.id, AckStatus.SUCCEEDED, result=None)
    wait_until(lambda: len(committers) == 4, what="four command events")
    assert committers == [
        ("queued", "bridge-io"),
        ("sent", "bridge-io"),
        ("delivered", "bridge-io"),
        ("succeeded", "bridge-io"),
    ]


def test_forged_and_malformed_acks_change_nothing(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    a, b = bridge.provision("dev-a", "dev-b")
    device_a = connect_device(broker, a)
    device_b = connect_device(broker, b)
    target = bridge.bridge.send("dev-a", "echo").result(10).record["id"]
    decode_command(device_a.next_message().payload)
    wait_until(lambda: bridge.state(target) == "sent", what="sent")

    # dev-b claims dev-a's command; the ACL keeps it from dev-a's topic, so it uses its own.
    ack(device_b, "dev-b", target, AckStatus.SUCCEEDED, result="forged")
    ack(device_b, "dev-b", new_command_id(), AckStatus.SUCCEEDED, result="unknown id")
    for payload in (
        b"not json",
        b"[]",
        b"\xff\xfe",
        json.dumps({"id": target, "status": "done", "at": utc_now()}).encode(),
        json.dumps({"id": target, "status": "failed", "at": utc_now()}).encode(),  # no error
        json.dumps({"id": "nope", "status": "succeeded", "at": utc_now()}).encode(),
    ):
        device_a.publish("tether/dev-a/ack", payload)
    stats = bridge.bridge.stats
    wait_until(lambda: stats["ignored_ack"] == 2 and stats["malformed_ack"] == 6, what="counts")
    assert bridge.state(target) == "sent"
    assert bridge.command(target)["result"] is None

    # The real device is still heard, and a late duplicate afterwards changes nothing.
    ack(device_a, "dev-a", target, AckStatus.FAILED, error="real failure")
    wait_until(lambda: bridge.state(target) == "failed", what="failed")
    ack(device_a, "dev-a", target, AckStatus.RECEIVED)
    ack(device_a, "dev-a", target, AckStatus.SUCCEEDED, result="late")
    wait_until(lambda: stats["ack_finished"] == 2, what="late acks counted")
    record = bridge.command(target)
    assert (record["state"], record["error"], record["result"]) == ("failed", "real failure", None)
    assert "delivered" not in record["times"]


def test_device_offline_longer_than_its_session_gets_its_commands_again(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    (creds,) = bridge.provision("dev-a")
    device = connect_device(broker, creds)
    device.publish("tether/dev-a/status", b'{"online": true}', retain=True)
    wait_until(lambda: bridge.device("dev-a")["online"], what="online")
    # Leave and let the broker drop the session at once: longer than its session expiry.
    device.publish("tether/dev-a/status", b'{"online": false}', retain=True)
    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    device.client.disconnect(properties=props)
    assert device.wait_disconnected()
    device.client.loop_stop()
    wait_until(lambda: not bridge.device("dev-a")["online"], what="known offline")

    ids = [bridge.bridge.send("dev-a", "echo", {"n": n}).result(10).record["id"] for n in range(3)]
    # Known offline: the commands wait in the store, not in a broker session (issue 13).
    assert [(bridge.state(i), bridge.command(i)["attempts"]) for i in ids] == [("queued", 0)] * 3

    returning = connect_device(broker, creds)
    assert not returning.session_present  # the broker kept nothing for it
    returning.publish("tether/dev-a/status", b'{"online": true}', retain=True)
    received = [decode_command(returning.next_message().payload).id for _ in ids]
    assert received == ids  # re-published from the store, in acceptance order
