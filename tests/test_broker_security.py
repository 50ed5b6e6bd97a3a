"""The broker's config does what the contract's security section says, against a real Mosquitto.

Absence of a message is proven with a fence: after the forbidden action the same publisher sends a
message the observer is allowed to get. Mosquitto delivers one publisher's messages to one
subscriber in order, so once the fence arrives, anything forbidden would already be there.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from tests.support.brokers import PREFIX, BrokerHandle, Credentials
from tests.support.mqtt import ProbeClient

pytestmark = pytest.mark.broker


def device(broker: BrokerHandle, creds: Credentials, **kwargs: object) -> ProbeClient:
    return ProbeClient(
        broker.host,
        broker.port,
        client_id=creds.username,
        username=creds.username,
        password=creds.password,
        **kwargs,  # type: ignore[arg-type]
    )


def bridge(broker: BrokerHandle) -> ProbeClient:
    return ProbeClient(
        broker.host, broker.port, username=broker.admin_username, password=broker.admin_password
    ).connect_ok()


def topic(device_id: str, channel: str) -> str:
    return f"{PREFIX}/{device_id}/{channel}"


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_anonymous_and_wrong_password_are_refused(broker: BrokerHandle, protocol: int) -> None:
    (creds,) = broker.provision("dev-a")
    anonymous = ProbeClient(broker.host, broker.port, protocol=protocol)
    assert anonymous.connect().is_failure
    wrong = ProbeClient(
        broker.host,
        broker.port,
        client_id="dev-a",
        username="dev-a",
        password="not-it",
        protocol=protocol,
    )
    assert wrong.connect().is_failure
    assert not device(broker, creds, protocol=protocol).connect().is_failure


def test_device_cannot_subscribe_to_another_devices_commands(broker: BrokerHandle) -> None:
    a, b = broker.provision("dev-a", "dev-b")
    device_a = device(broker, a).connect_ok()
    device_b = device(broker, b).connect_ok()
    assert not any(r.is_failure for r in device_a.subscribe(topic("dev-a", "cmd")))
    assert not any(r.is_failure for r in device_b.subscribe(topic("dev-b", "cmd")))
    for forbidden in (topic("dev-b", "cmd"), f"{PREFIX}/+/cmd", "#", f"{PREFIX}/#"):
        assert all(r.is_failure for r in device_a.subscribe(forbidden)), forbidden

    controller = bridge(broker)
    controller.publish(topic("dev-b", "cmd"), b"for b only")
    controller.publish(topic("dev-a", "cmd"), b"fence")
    assert device_b.next_message().payload == b"for b only"
    first = device_a.next_message()
    assert (first.topic, first.payload) == (topic("dev-a", "cmd"), b"fence")
    assert device_a.drain() == []


def test_device_cannot_publish_to_another_devices_topics(broker: BrokerHandle) -> None:
    a, _ = broker.provision("dev-a", "dev-b")
    observer = bridge(broker)
    assert not any(r.is_failure for r in observer.subscribe(f"{PREFIX}/#"))
    device_a = device(broker, a).connect_ok()
    for channel in ("ack", "evt", "status"):
        device_a.client.publish(topic("dev-b", channel), b"forged", qos=1)
    device_a.client.publish(topic("dev-b", "cmd"), b"forged", qos=1)
    device_a.client.publish(topic("dev-a", "cmd"), b"forged", qos=1)
    device_a.publish(topic("dev-a", "ack"), b"fence")
    first = observer.next_message()
    assert (first.topic, first.payload) == (topic("dev-a", "ack"), b"fence")
    assert observer.drain() == []


def test_client_id_must_equal_username(broker: BrokerHandle) -> None:
    a, b = broker.provision("dev-a", "dev-b")
    device_a = device(broker, a).connect_ok()
    assert not any(r.is_failure for r in device_a.subscribe(topic("dev-a", "cmd")))

    takeover = ProbeClient(
        broker.host, broker.port, client_id="dev-a", username=b.username, password=b.password
    )
    assert takeover.connect().is_failure
    stray = ProbeClient(broker.host, broker.port, username=a.username, password=a.password)
    assert stray.connect().is_failure  # a's own credentials under a random client id

    # The refused attempt did not kick the real dev-a off its session.
    bridge(broker).publish(topic("dev-a", "cmd"), b"still yours")
    assert device_a.next_message().payload == b"still yours"


def test_device_cannot_read_sys_topics(broker: BrokerHandle) -> None:
    (a,) = broker.provision("dev-a")
    observer = bridge(broker)
    assert not any(r.is_failure for r in observer.subscribe("$SYS/broker/version"))
    assert observer.next_message().payload.startswith(b"mosquitto version")  # retained: it exists

    device_a = device(broker, a).connect_ok()
    assert not any(r.is_failure for r in device_a.subscribe(topic("dev-a", "cmd")))
    for forbidden in ("$SYS/#", "$SYS/broker/version", "$CONTROL/dynamic-security/#"):
        assert all(r.is_failure for r in device_a.subscribe(forbidden)), forbidden
    observer.publish(topic("dev-a", "cmd"), b"fence")
    assert device_a.next_message().payload == b"fence"
    assert device_a.drain() == []


def test_oversized_packet_is_refused(broker: BrokerHandle) -> None:
    (a,) = broker.provision("dev-a")
    observer = bridge(broker)
    assert not any(r.is_failure for r in observer.subscribe(f"{PREFIX}/+/evt"))
    device_a = device(broker, a).connect_ok()
    device_a.client.publish(topic("dev-a", "evt"), b"x" * (256 * 1024), qos=1)
    assert device_a.wait_disconnected(), "the broker kept a client that sent an oversized packet"
    assert observer.drain() == []


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
@pytest.mark.parametrize("restart_broker", [False, True], ids=["same-broker", "broker-restart"])
def test_queued_command_reaches_device_after_reconnect(
    broker: BrokerHandle, protocol: int, restart_broker: bool
) -> None:
    (a,) = broker.provision("dev-a")
    device_a = device(broker, a, protocol=protocol, persistent=True).connect_ok()
    assert not any(r.is_failure for r in device_a.subscribe(topic("dev-a", "cmd")))
    device_a.disconnect()

    controller = bridge(broker)
    controller.publish(topic("dev-a", "cmd"), b"while you were away")
    controller.disconnect()
    if restart_broker:
        broker.restart()

    returning = device(broker, a, protocol=protocol, persistent=True).connect_ok()
    assert returning.session_present
    message = returning.next_message()
    assert (message.topic, message.payload, message.qos) == (
        topic("dev-a", "cmd"),
        b"while you were away",
        1,
    )


def test_revoked_device_is_disconnected_and_cannot_return(broker: BrokerHandle) -> None:
    (a,) = broker.provision("dev-a")
    device_a = device(broker, a).connect_ok()
    with broker.admin() as admin:
        admin.delete_device("dev-a", "dev-a")
    assert device_a.wait_disconnected()
    assert device(broker, a).connect().is_failure


def test_provisioning_survives_broker_restart(broker: BrokerHandle) -> None:
    (a,) = broker.provision("dev-a")
    broker.restart()
    assert not device(broker, a).connect().is_failure
