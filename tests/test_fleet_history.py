"""Fleet history over REST, derived from the store: it survives a restart of the gateway, shows
minutes without commands, separates waiting for an offline device from a slow device, and a
device's presence history is readable."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from tests.support.bridges import bridge_settings
from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.gateways import RunningGateway, start_gateway
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker


def _wait_final(gateway: RunningGateway, ids: list[str], state: str = "succeeded") -> None:
    with gateway.client(Role.VIEWER) as client:
        for command_id in ids:
            wait_until(
                lambda c=command_id: client.get(f"/api/commands/{c}").json()["state"] == state,
                what=f"{command_id} {state}",
            )


def test_history_comes_from_the_store_and_survives_a_restart(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    gateway = start_gateway(bridge_settings(broker, tmp_path / "store"))
    try:
        with gateway.client(Role.ADMIN) as api, DemoAgent(broker, api, "pump-1"):
            ids = [
                api.post(
                    "/api/devices/pump-1/commands",
                    json={"name": "sleep", "args": {"seconds": (20 + 3 * n) / 1000}},
                ).json()["id"]
                for n in range(12)
            ]
            _wait_final(gateway, ids)
    finally:
        gateway.stop()

    gateway = start_gateway(bridge_settings(broker, tmp_path / "store"))  # a fresh process' view
    try:
        with gateway.client(Role.VIEWER) as client:
            assert client.get("/api/fleet").json()["latency_ms"]["end_to_end"]["count"] == 0
            reply = client.get("/api/fleet/history?range=15m")
            assert reply.status_code == 200, reply.text
            history = reply.json()
            assert history["range"] == "15m" and history["step_seconds"] == 60
            points = history["points"]
            assert len(points) == 15  # every minute of the range, empty ones too
            assert [p["t"] for p in points] == sorted(p["t"] for p in points)
            assert all(b["t"] - a["t"] == 60 for a, b in pairwise(points))
            assert sum(p["finished"] for p in points) == 12
            assert sum(p["states"].get("succeeded", 0) for p in points) == 12
            busy = [p for p in points if p["count"]]
            assert busy and all(p["p50_ms"] <= p["p99_ms"] for p in busy)
            e2e = history["latency_ms"]["end_to_end"]
            device = history["latency_ms"]["delivered_to_final"]
            assert e2e["count"] == 12 and device["count"] == 12
            # values, not bucket bounds: the device slept 20…53 ms
            assert 20 <= device["p50"] <= 60 and device["p50"] <= device["p99"] <= 80, device
            assert all(s["ok"] for s in history["shards"])

            for window in ("1h", "6h"):
                longer = client.get(f"/api/fleet/history?range={window}").json()
                assert len(longer["points"]) == longer["range_seconds"] // 60
                assert sum(p["finished"] for p in longer["points"]) == 12
            paths = client.get("/openapi.json").json()["paths"]
            assert {"/api/fleet/history", "/api/devices/{device_id}/events"} <= set(paths)
            bad = client.get("/api/fleet/history?range=3d")
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
        with gateway.client(None) as anonymous:
            assert anonymous.get("/api/fleet/history").status_code == 401
    finally:
        gateway.stop()


def test_waiting_for_an_offline_device_is_not_counted_as_a_slow_device(
    broker: BrokerHandle, gateway: RunningGateway
) -> None:
    with gateway.client(Role.ADMIN) as api:
        late = DemoAgent(broker, api, "late-1")  # provisioned, not connected yet
        command = api.post("/api/devices/late-1/commands", json={"name": "echo"}).json()
        _wait_final(gateway, [command["id"]], "sent")
        with late:
            _wait_final(gateway, [command["id"]])
        record = api.get(f"/api/commands/{command['id']}").json()
        fleet = api.get("/api/fleet").json()
        events = wait_until(
            lambda: (
                (e := api.get("/api/devices/late-1/events?kind=presence").json()["events"])
                and e[0]["data"]["online"] is False
                and e
            ),
            what="late-1 offline in its presence history",
        )
        assert api.get("/api/devices/late-1/events?kind=nope").status_code == 400
        assert api.get("/api/devices/nobody/events").status_code == 404

    waits = {w["device"]: w for w in fleet["longest_waits"]}
    slow = {s["device"]: s for s in fleet["slowest"]}
    assert waits["late-1"]["commands"] == 1
    # the wait (queued → delivered) is the time offline; the device itself was quick
    assert waits["late-1"]["mean_wait_ms"] > 5 * slow["late-1"]["mean_device_ms"], (waits, slow)
    assert slow["late-1"]["mean_end_to_end_ms"] >= waits["late-1"]["mean_wait_ms"]
    assert record["times"]["delivered"] > record["times"]["sent"]

    # its presence history: online, then offline when the agent stopped (newest first)
    assert [e["kind"] for e in events] == ["presence"] * len(events)
    assert [e["data"]["online"] for e in events][:2] == [False, True], events
