"""``tether send`` and ``tether provision`` as a user runs them, on a real gateway and broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.gateways import TOKENS, RunningGateway
from tests.support.waiting import wait_until
from tether.protocol.paths import api_path
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker

TETHER = [sys.executable, "-m", "tether_cli"]


def tether(
    gateway: RunningGateway, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TETHER, *argv, "--url", gateway.url, "--token", TOKENS[Role.ADMIN]],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def provision(gateway: RunningGateway, *device_ids: str) -> None:
    with gateway.client(Role.ADMIN) as api:
        for device_id in device_ids:
            assert api.post("/api/devices", json={"id": device_id}).status_code == 201


def history(gateway: RunningGateway, device_id: str) -> list[dict[str, object]]:
    with gateway.client(Role.VIEWER) as api:
        response = api.get(api_path("devices", device_id, "commands"))
        assert response.status_code == 200, response.text
        commands: list[dict[str, object]] = response.json()["commands"]
        return commands


# Item 5: sending to an offline device says so.


def test_send_to_an_offline_device_says_it_waits(gateway: RunningGateway) -> None:
    provision(gateway, "pump-7")
    result = tether(gateway, "send", "pump-7", "echo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1] == "queued"
    assert "pump-7 is offline; the command waits until it reconnects (no TTL)" in result.stderr


def test_the_offline_hint_names_the_ttl_and_the_wait_limit(gateway: RunningGateway) -> None:
    provision(gateway, "pump-8")
    result = tether(gateway, "send", "pump-8", "echo", "--ttl", "60", "--wait", "--timeout", "0.5")
    assert result.returncode == 3, result.stderr  # still `sent`/`queued` when --timeout runs out
    assert "pump-8 is offline; the command waits until it reconnects (TTL 60 s" in result.stderr
    assert "--wait gives up after 0.5 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_offline_hint_for_an_online_device(
    broker: BrokerHandle, gateway: RunningGateway
) -> None:
    with gateway.client(Role.ADMIN) as api, DemoAgent(broker, api, "pump-9"):
        wait_until(lambda: api.get("/api/devices/pump-9").json()["online"], what="pump-9 online")
        result = tether(gateway, "send", "pump-9", "echo", "--wait", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "offline" not in result.stderr
    assert '"state": "succeeded"' in result.stdout


# Item 6: ids are checked on the client and every path segment is quoted.


def test_an_id_with_a_path_in_it_is_refused_and_reaches_no_other_device(
    gateway: RunningGateway,
) -> None:
    provision(gateway, "sim-00002", "sim-00003")
    result = tether(gateway, "send", "sim-00002/../sim-00003", "echo")
    assert result.returncode == 2
    assert "device id: 'sim-00002/../sim-00003' is not allowed" in result.stderr
    assert "Traceback" not in result.stderr
    assert history(gateway, "sim-00003") == []
    assert history(gateway, "sim-00002") == []


@pytest.mark.parametrize("bad_id", ["sim-00001#x", "sim-00001?x=1", "a b", "+", "_lead"])
def test_invalid_ids_are_a_clear_client_error(gateway: RunningGateway, bad_id: str) -> None:
    provision(gateway, "sim-00001")
    result = tether(gateway, "send", bad_id, "echo")
    assert result.returncode == 2
    assert result.stderr.startswith(f"tether send: device id: {bad_id!r} is not allowed")
    assert "405" not in result.stderr
    assert history(gateway, "sim-00001") == []


def test_provision_checks_ids_before_asking_the_server(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    out = tmp_path / "creds.json"
    result = tether(gateway, "provision", "ok-1", "bad/id", "--out", str(out))
    assert result.returncode == 2
    assert "device id: 'bad/id' is not allowed" in result.stderr
    assert not out.exists()
    with gateway.client(Role.VIEWER) as api:
        assert api.get("/api/devices/ok-1").status_code == 404


def test_provision_one_device_says_one_device(gateway: RunningGateway, tmp_path: Path) -> None:
    out = tmp_path / "creds.json"
    result = tether(gateway, "provision", "--count", "1", "--id-prefix", "pump-", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"1 device ready; credentials in {out}")
    with gateway.client(Role.VIEWER) as api:
        assert api.get("/api/devices/pump-00001").status_code == 200


def test_path_segments_are_quoted() -> None:
    assert api_path("devices", "a/../b", "commands") == "/api/devices/a%2F..%2Fb/commands"
    assert api_path("devices", "x#y?z") == "/api/devices/x%23y%3Fz"
    assert api_path("commands", "0190c0de-0000-7000-8000-000000000000", "cancel") == (
        "/api/commands/0190c0de-0000-7000-8000-000000000000/cancel"
    )
