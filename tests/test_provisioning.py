"""Provisioning and revocation through the bridge: broker credentials and store in step, live."""

from __future__ import annotations

import pytest

from broker_bridge.errors import Conflict, UnknownDevice
from tests.support.bridges import BridgeHandle
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.mqtt import ProbeClient
from tether.protocol import ProtocolError

pytestmark = pytest.mark.broker


def device(broker: BrokerHandle, creds: Credentials) -> ProbeClient:
    return ProbeClient(
        broker.host,
        broker.port,
        client_id=creds.username,
        username=creds.username,
        password=creds.password,
    )


def test_provisioned_device_connects_and_is_recorded(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    (creds,) = bridge.provision("pump-1")
    assert not device(broker, creds).connect().is_failure
    assert bridge.device("pump-1")["username"] == "pump-1"
    with pytest.raises(Conflict):
        bridge.provision("pump-1")


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "$SYS", "x" * 65, "nul\x00", ""])
def test_bad_ids_are_refused_before_anything_changes(bridge: BridgeHandle, bad: str) -> None:
    with pytest.raises(ProtocolError):
        bridge.provision(bad)


def test_revoked_device_is_cut_off_and_its_queue_ended(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    (creds,) = bridge.provision("pump-1")
    connected = device(broker, creds).connect_ok()
    pending = bridge.bridge.send("pump-1", "echo").result(10).record["id"]
    bridge.bridge.provisioner.revoke("pump-1")
    assert connected.wait_disconnected()
    assert device(broker, creds).connect().is_failure
    assert bridge.state(pending) == "undeliverable"
    with pytest.raises(UnknownDevice):
        bridge.bridge.send("pump-1", "echo").result(10)
    with pytest.raises(UnknownDevice):
        bridge.bridge.provisioner.revoke("pump-1")

    (again,) = bridge.provision("pump-1")  # the id may be provisioned anew, with a new password
    assert again.password != creds.password
    assert device(broker, creds).connect().is_failure
    assert not device(broker, again).connect().is_failure
