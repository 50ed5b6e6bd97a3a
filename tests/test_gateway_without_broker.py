"""The whole HTTP/WS surface over a real store, through the command service, with no broker.

The gateway holds only a :class:`tether.protocol.service.CommandService`; here that is a store
with no MQTT side (tests/support/store_service.py), so these tests need no Mosquitto.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support.gateways import TOKENS, token_table
from tests.support.store_service import StoreOnlyService
from ui_gateway.app import create_app
from ui_gateway.auth import Role
from ui_gateway.settings import GatewaySettings


def _headers(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(StoreOnlyService(tmp_path / "data"), token_table(), GatewaySettings())
    with TestClient(app) as test_client:
        yield test_client


def test_provision_send_read_and_cancel_over_rest(client: TestClient) -> None:
    admin, operator = _headers(Role.ADMIN), _headers(Role.OPERATOR)
    assert client.post("/api/devices", json={"id": "pump-1"}, headers=admin).status_code == 201
    sent = client.post(
        "/api/devices/pump-1/commands", json={"name": "blink", "args": {"n": 2}}, headers=operator
    )
    assert sent.status_code == 202
    record = sent.json()
    assert (record["device"], record["name"], record["state"]) == ("pump-1", "blink", "queued")

    one = client.get(f"/api/commands/{record['id']}", headers=operator).json()
    assert one["id"] == record["id"] and one["args"] == {"n": 2}
    listed = client.get("/api/devices/pump-1/commands", headers=operator).json()["commands"]
    assert [c["id"] for c in listed] == [record["id"]]

    cancelled = client.post(f"/api/commands/{record['id']}/cancel", headers=operator).json()
    assert cancelled["state"] == "cancelled" and cancelled["cancel"] == "done"
    again = client.post(f"/api/commands/{record['id']}/cancel", headers=operator)
    assert again.status_code == 409


def test_errors_keep_the_contract_shape(client: TestClient) -> None:
    operator = _headers(Role.OPERATOR)
    missing = client.get("/api/commands/nope", headers=operator)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    unknown = client.get("/api/devices/ghost", headers=operator)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_device"
    bad = client.post("/api/devices/pump-1/commands", json={"args": {}}, headers=operator)
    assert bad.status_code in (400, 422) and "error" in bad.json()
    denied = client.post("/api/devices", json={"id": "x-1"}, headers=operator)
    assert denied.status_code == 403


def test_idempotent_retry_returns_the_first_command(client: TestClient) -> None:
    operator = {**_headers(Role.OPERATOR), "Idempotency-Key": "k-1"}
    client.post("/api/devices", json={"id": "pump-2"}, headers=_headers(Role.ADMIN))
    first = client.post("/api/devices/pump-2/commands", json={"name": "go"}, headers=operator)
    second = client.post("/api/devices/pump-2/commands", json={"name": "go"}, headers=operator)
    assert first.json()["id"] == second.json()["id"]


def test_websocket_send_then_resume_from_a_cursor(client: TestClient) -> None:
    client.post("/api/devices", json={"id": "pump-3"}, headers=_headers(Role.ADMIN))
    token = TOKENS[Role.OPERATOR]
    with client.websocket_connect(f"/ws?token={token}") as ws:
        ws.send_text(json.dumps({"type": "send", "ref": 1, "device": "pump-3", "name": "a"}))
        accepted = json.loads(ws.receive_text())
        assert accepted["type"] == "accepted" and accepted["ref"] == 1
        event = json.loads(ws.receive_text())
        assert event["type"] == "event" and event["data"]["id"] == accepted["command"]["id"]
        cursor = event["id"]
        ws.send_text(json.dumps({"type": "send", "ref": 2, "device": "pump-3", "name": "b"}))
        frames = [json.loads(ws.receive_text()) for _ in range(2)]
        second = next(f for f in frames if f["type"] == "accepted")["command"]["id"]
    with client.websocket_connect(f"/ws?token={token}&last_event_id={cursor}") as ws:
        replayed = json.loads(ws.receive_text())
        assert replayed["type"] == "event" and replayed["data"]["id"] == second


def test_fleet_metrics_and_readiness_without_a_broker(client: TestClient) -> None:
    viewer = _headers(Role.VIEWER)
    client.post("/api/devices", json={"id": "pump-4"}, headers=_headers(Role.ADMIN))
    fleet = client.get("/api/fleet", headers=viewer).json()
    assert fleet["devices"]["total"] == 1 and fleet["broker"]["connected"] is False
    metrics = client.get("/metrics", headers=viewer).text
    assert "tether_broker_connected 0.0" in metrics
    assert 'tether_devices{presence="offline"} 1.0' in metrics
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {
        "ready": False,
        "broker": False,
        "store": True,
    }
    history = client.get("/api/fleet/history?range=15m", headers=viewer)
    assert history.status_code == 200 and len(history.json()["points"]) == 15
