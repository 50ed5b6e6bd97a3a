"""Presence comes from what the broker knows now (issue 20, item 1): a replaced or revoked login
leaves no retained `online` behind, a restarted bridge does not take an old retained `online` for
a connected device, and an existing id is never silently given a new password."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_bridge.bridge import Bridge
from tests.support.bridges import BridgeHandle, bridge_settings
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.gateways import RunningGateway
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until
from tether_cli.fleet import ProvisioningError, provision_fleet

pytestmark = pytest.mark.broker


class Bridges:
    """Bridges over one store, started and stopped by the test (a restart is the point)."""

    def __init__(self, broker: BrokerHandle, data_dir: Path) -> None:
        self.broker, self.data_dir = broker, data_dir
        self.running: list[Bridge] = []

    def start(self) -> BridgeHandle:
        bridge = Bridge(bridge_settings(self.broker, self.data_dir))
        bridge.start()
        self.running.append(bridge)
        return BridgeHandle(bridge)

    def stop(self, handle: BridgeHandle) -> None:
        handle.bridge.stop()
        self.running.remove(handle.bridge)


@pytest.fixture
def bridges(broker: BrokerHandle, tmp_path: Path) -> Iterator[Bridges]:
    made = Bridges(broker, tmp_path / "store")
    yield made
    for bridge in made.running:
        bridge.stop()


def device(broker: BrokerHandle, creds: Credentials) -> ProbeClient:
    """A device that says it is online (retained) and, like a crashed one, never says otherwise:
    it has no Last Will."""
    client = broker.device_client(creds, persistent=True).connect_ok()
    client.publish(f"tether/{creds.device_id}/status", b'{"online": true}', retain=True)
    return client


def login_works(broker: BrokerHandle, creds: Credentials, password: str) -> bool:
    probe = broker.device_client(creds, password=password)
    ok = not probe.connect().is_failure
    if ok:
        probe.disconnect()
    return ok


def test_a_rotated_login_is_cut_off_and_shows_offline_also_after_a_restart(
    broker: BrokerHandle, bridges: Bridges
) -> None:
    first = bridges.start()
    (creds,) = first.provision("pump-7")
    client = device(broker, creds)
    wait_until(lambda: first.device("pump-7")["online"], what="online")
    _record, password = first.bridge.provisioner.rotate("pump-7")
    assert client.wait_disconnected()  # the broker dropped the old login
    wait_until(lambda: not first.device("pump-7")["online"], what="offline after the rotate")
    bridges.stop(first)
    second = bridges.start()
    wait_until(lambda: second.bridge.stats["connects"] >= 1, what="connected")
    assert not second.device("pump-7")["online"]  # no old retained `online` came back
    assert login_works(broker, creds, password) and not login_works(broker, creds, creds.password)


def test_a_retained_online_is_unconfirmed_until_the_device_speaks(
    broker: BrokerHandle, bridges: Bridges
) -> None:
    first = bridges.start()
    (creds,) = first.provision("pump-7")
    client = device(broker, creds)
    wait_until(lambda: first.device("pump-7")["confirmed"] is True, what="confirmed online")
    bridges.stop(first)
    client.disconnect()  # it goes silent, no Last Will: the broker keeps its retained `online`
    second = bridges.start()
    wait_until(lambda: second.device("pump-7")["online"], what="the retained replay")
    assert second.device("pump-7")["confirmed"] is False  # the broker replayed it; nobody spoke
    speaking = broker.device_client(creds).connect_ok()
    hello = b'{"name": "hi", "data": null, "at": "2026-11-29T00:00:00Z"}'
    speaking.publish("tether/pump-7/evt", hello)
    wait_until(lambda: second.device("pump-7")["confirmed"] is True, what="confirmed by the device")
    speaking.disconnect()


def test_a_device_gone_without_a_status_is_offline_after_a_restart(
    broker: BrokerHandle, bridges: Bridges
) -> None:
    """The store said online; the broker has no status for it (cleared while the bridge was
    down): after the start's presence check it is offline, with a presence event."""
    first = bridges.start()
    (creds,) = first.provision("pump-7")
    client = device(broker, creds)
    wait_until(lambda: first.device("pump-7")["online"], what="online")
    bridges.stop(first)
    client.publish("tether/pump-7/status", b"", retain=True)  # cleared behind the bridge's back
    client.disconnect()
    second = bridges.start()
    wait_until(lambda: not second.device("pump-7")["online"], what="offline after the check")


def test_provision_refuses_an_existing_id_unless_told_to_rotate(
    broker: BrokerHandle, gateway: RunningGateway, tmp_path: Path
) -> None:
    with gateway.client() as api:
        created = api.post("/api/devices", json={"id": "pump-7"}).json()
        creds = Credentials("pump-7", created["username"], created["password"])
        out = tmp_path / "creds.json"
        with pytest.raises(ProvisioningError, match="--rotate"):
            provision_fleet(api, ["pump-7", "pump-8"], out)
        assert not out.exists()
        assert login_works(broker, creds, creds.password)  # nothing was changed
        assert api.get("/api/devices/pump-8").status_code == 404
        rows = {r["id"]: r for r in provision_fleet(api, ["pump-7", "pump-8"], out, rotate=True)}
        assert json.loads(out.read_text()) == list(rows.values())
        assert login_works(broker, creds, rows["pump-7"]["password"])
        assert not login_works(broker, creds, creds.password)
        missing = api.post("/api/devices/nobody/rotate")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_device"


def test_rotate_needs_admin(gateway: RunningGateway) -> None:
    from ui_gateway.auth import Role

    with gateway.client() as admin, gateway.client(Role.OPERATOR) as operator:
        admin.post("/api/devices", json={"id": "pump-7"})
        assert operator.post("/api/devices/pump-7/rotate").status_code == 403
