"""Honest outcomes on a real broker (issue 13): a record never says "did not run" about a command
that ran, and a command that could not have reached a device never does.

Two kinds of device: a plain paho client speaking MQTT 3.1.1 with a persistent session (what a
third party writes from the contract alone), and Tether's agent, which honours cancel notices."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from broker_bridge.bridge import Bridge
from broker_bridge.policy import DeliveryPolicy
from tests.support.bridges import BridgeHandle, bridge_settings
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.devices import agent_for
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until
from tether.protocol import AckMessage, AckStatus, decode_command, utc_now
from tether.protocol.service import StoredEvent

pytestmark = pytest.mark.broker

FAST = DeliveryPolicy(redelivery_after=0.3, max_attempts=2, execution_timeout=0.5)


@pytest.fixture
def fast_bridge(broker: BrokerHandle, tmp_path: Path) -> Iterator[BridgeHandle]:
    """A bridge whose delivery policy runs out within a second: redelivery, attempts, timeout."""
    running = Bridge(bridge_settings(broker, tmp_path / "store", FAST, sweep_interval=0.05))
    running.start()
    try:
        yield BridgeHandle(running)
    finally:
        running.stop()


class PlainDevice:
    """A device written from the contract with plain paho: MQTT 3.1.1, persistent session."""

    def __init__(self, broker: BrokerHandle, creds: Credentials) -> None:
        self.broker, self.creds = broker, creds
        self.topic = f"tether/{creds.device_id}"
        self.client: ProbeClient | None = None

    def come_online(self) -> PlainDevice:
        self.client = self.broker.device_client(
            self.creds, protocol=mqtt.MQTTv311, persistent=True
        ).connect_ok()
        assert not any(r.is_failure for r in self.client.subscribe(f"{self.topic}/cmd"))
        self.client.publish(f"{self.topic}/status", b'{"online": true}', retain=True)
        return self

    def go_offline(self) -> None:
        assert self.client is not None
        self.client.publish(f"{self.topic}/status", b'{"online": false}', retain=True)
        self.client.disconnect()
        self.client = None

    def next_command_id(self) -> str:
        assert self.client is not None
        return decode_command(self.client.next_message().payload).id

    def ack(self, command_id: str, status: AckStatus, **kw: Any) -> None:
        assert self.client is not None
        message = AckMessage(command_id, status, utc_now(), **kw)
        self.client.publish(f"{self.topic}/ack", message.encode())

    def run(self, command_id: str) -> None:
        """It runs the command, whatever the server thinks of it now."""
        self.ack(command_id, AckStatus.RECEIVED)
        self.ack(command_id, AckStatus.SUCCEEDED, result={"ran": True})


def online(bridge: BridgeHandle, device_id: str) -> None:
    wait_until(lambda: bridge.device(device_id)["online"], what=f"{device_id} online")


def offline(bridge: BridgeHandle, device_id: str) -> None:
    wait_until(lambda: not bridge.device(device_id)["online"], what=f"{device_id} offline")


def send(bridge: BridgeHandle, device_id: str, **kw: Any) -> str:
    return str(bridge.bridge.send(device_id, "blink", **kw).result(10).record["id"])


def wait_state(bridge: BridgeHandle, command_id: str, state: str) -> dict[str, Any]:
    wait_until(lambda: bridge.state(command_id) == state, what=state)
    return bridge.command(command_id)


def wait_late(bridge: BridgeHandle, command_id: str, status: str) -> dict[str, Any]:
    def got() -> bool:
        late = bridge.command(command_id)["late"]
        return late is not None and late["status"] == status

    wait_until(got, what=f"late {status}")
    return bridge.command(command_id)


def assert_gets_only(device: PlainDevice, bridge: BridgeHandle) -> None:
    """The device's next command is a new one sent now: nothing older reaches it first (a
    device's commands arrive in acceptance order, so an older one would come before)."""
    marker = send(bridge, device.creds.device_id)
    assert device.next_command_id() == marker


def a_plain_device_that_went_away(bridge: BridgeHandle, broker: BrokerHandle) -> PlainDevice:
    (creds,) = bridge.provision("pump-7")
    device = PlainDevice(broker, creds).come_online()
    online(bridge, "pump-7")
    device.go_offline()
    offline(bridge, "pump-7")
    return device


# --- a device that could not have received it never does --------------------------------------


def test_cancel_while_offline_is_exact_and_the_device_never_gets_it(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    device = a_plain_device_that_went_away(bridge, broker)
    cid = send(bridge, "pump-7")
    assert (bridge.state(cid), bridge.command(cid)["attempts"]) == ("queued", 0)
    record = bridge.bridge.cancel(cid).result(10)
    assert (record["state"], record["cancel"], record["ended_by"]) == (
        "cancelled",
        "done",
        "operator",
    )
    device.come_online()
    assert_gets_only(device, bridge)
    assert bridge.command(cid)["late"] is None


def test_ttl_while_offline_is_exact_and_the_device_never_gets_it(
    broker: BrokerHandle, fast_bridge: BridgeHandle
) -> None:
    device = a_plain_device_that_went_away(fast_bridge, broker)
    cid = send(fast_bridge, "pump-7", ttl=0.2)
    record = wait_state(fast_bridge, cid, "expired")
    assert (record["attempts"], record["ended_by"]) == (0, "tether")
    device.come_online()
    assert_gets_only(device, fast_bridge)


def test_revoke_while_offline_never_reaches_the_reprovisioned_device(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    device = a_plain_device_that_went_away(bridge, broker)
    cid = send(bridge, "pump-7")
    bridge.bridge.provisioner.revoke("pump-7")
    assert (bridge.state(cid), bridge.command(cid)["attempts"]) == ("undeliverable", 0)
    (device.creds,) = bridge.provision("pump-7")
    device.come_online()
    assert_gets_only(device, bridge)


# --- a device that runs it anyway: the record says so ----------------------------------------


def test_cancelled_after_handover_then_run_reads_cancelled_but_ran(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    """The issue's story: cancel answers `requested`, and the run that follows is on the
    record and in the event stream, not dropped."""
    (creds,) = bridge.provision("pump-7")
    device = PlainDevice(broker, creds).come_online()
    online(bridge, "pump-7")
    events: list[StoredEvent] = []
    bridge.bridge.store.add_listener(events.extend)
    cid = send(bridge, "pump-7")
    assert device.next_command_id() == cid
    wait_state(bridge, cid, "sent")
    record = bridge.bridge.cancel(cid).result(10)
    assert (record["state"], record["cancel"]) == ("cancelled", "requested")
    device.run(cid)
    record = wait_late(bridge, cid, "succeeded")
    assert record["state"] == "cancelled"
    assert record["late"]["result"] == {"ran": True}
    wait_until(
        lambda: any(e.kind == "command" and e.data.get("late") for e in events),
        what="the late outcome as a command event",
    )
    assert bridge.bridge.stats["late_outcomes"] >= 1


def test_undeliverable_then_run_says_so(broker: BrokerHandle, fast_bridge: BridgeHandle) -> None:
    (creds,) = fast_bridge.provision("pump-7")
    device = PlainDevice(broker, creds).come_online()
    online(fast_bridge, "pump-7")
    cid = send(fast_bridge, "pump-7")
    wait_state(fast_bridge, cid, "undeliverable")  # never said `received` within 2 attempts
    device.run(cid)
    assert wait_late(fast_bridge, cid, "succeeded")["state"] == "undeliverable"


def test_expired_on_a_311_device_that_runs_it_anyway_says_so(
    broker: BrokerHandle, fast_bridge: BridgeHandle
) -> None:
    """MQTT 3.1.1 has no message expiry: the broker hands over a command past its TTL."""
    (creds,) = fast_bridge.provision("pump-7")
    device = PlainDevice(broker, creds).come_online()
    online(fast_bridge, "pump-7")
    cid = send(fast_bridge, "pump-7", ttl=0.2)
    assert device.next_command_id() == cid
    wait_state(fast_bridge, cid, "expired")
    device.run(cid)
    assert wait_late(fast_bridge, cid, "succeeded")["state"] == "expired"


def test_timed_out_then_succeeded_says_so(broker: BrokerHandle, fast_bridge: BridgeHandle) -> None:
    (creds,) = fast_bridge.provision("pump-7")
    device = PlainDevice(broker, creds).come_online()
    online(fast_bridge, "pump-7")
    cid = send(fast_bridge, "pump-7")
    device.ack(device.next_command_id(), AckStatus.RECEIVED)
    wait_state(fast_bridge, cid, "timed_out")
    device.ack(cid, AckStatus.SUCCEEDED, result=1)
    assert wait_late(fast_bridge, cid, "succeeded")["late"]["result"] == 1


def test_revoked_with_the_command_in_hand_then_run_says_so(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    (creds,) = bridge.provision("pump-7")
    device = PlainDevice(broker, creds).come_online()
    online(bridge, "pump-7")
    cid = send(bridge, "pump-7")
    assert device.next_command_id() == cid
    bridge.bridge.provisioner.revoke("pump-7")  # kicks it before it could ack
    assert bridge.state(cid) == "undeliverable"
    assert device.client is not None and device.client.wait_disconnected()
    (device.creds,) = bridge.provision("pump-7")  # the same device, given a new login
    device.come_online()
    device.run(cid)
    assert wait_late(bridge, cid, "succeeded")["state"] == "undeliverable"


# --- Tether's agent honours a cancel notice for a command it has not started ------------------


def test_the_agent_cancels_a_command_waiting_behind_a_running_one(
    broker: BrokerHandle, bridge: BridgeHandle, tmp_path: Path
) -> None:
    (creds,) = bridge.provision("pump-7")
    agent = agent_for(broker, creds, tmp_path)
    release = threading.Event()
    ran: list[str] = []

    @agent.command("slow")
    def slow(args: dict[str, Any]) -> Any:
        ran.append("slow")
        release.wait(10)

    @agent.command("blink")
    def blink(args: dict[str, Any]) -> Any:
        ran.append("blink")

    with agent:
        wait_until(lambda: bridge.device("pump-7")["features"] == ["cancel"], what="features")
        first = str(bridge.bridge.send("pump-7", "slow").result(10).record["id"])
        wait_state(bridge, first, "delivered")
        second = send(bridge, "pump-7")
        wait_state(bridge, second, "sent")  # waiting in the agent's queue, not yet received
        record = bridge.bridge.cancel(second).result(10)
        assert (record["state"], record["cancel"]) == ("cancelled", "requested")
        release.set()
        record = wait_late(bridge, second, "cancelled")  # the device confirms: not run
        wait_state(bridge, first, "succeeded")
        third = send(bridge, "pump-7")
        wait_state(bridge, third, "succeeded")
    assert ran == ["slow", "blink"]  # the third ran; the cancelled one never did
    assert bridge.command(second)["late"]["status"] == "cancelled"
