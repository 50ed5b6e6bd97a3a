"""The REST API through the real app, bridge, broker and device agent: every route, code, role."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devices.agent import DeviceAgent
from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.gateways import RunningGateway
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker


@pytest.fixture
def device(broker: BrokerHandle, gateway: RunningGateway) -> Iterator[DeviceAgent]:
    with gateway.client(Role.ADMIN) as api, DemoAgent(broker, api, "pump-1") as running:
        yield running


def error_code(response: object) -> str:
    return response.json()["error"]["code"]  # type: ignore[attr-defined,no-any-return]


def wait_state(gateway: RunningGateway, command_id: str, state: str) -> dict[str, object]:
    with gateway.client(Role.VIEWER) as client:
        return wait_until(
            lambda: (r := client.get(f"/api/commands/{command_id}").json())["state"] == state and r,
            what=f"{command_id} {state}",
        )


def test_provision_send_follow_history(gateway: RunningGateway, device: DeviceAgent) -> None:
    with gateway.client(Role.OPERATOR) as client:
        sent = client.post("/api/devices/pump-1/commands", json={"name": "echo", "args": {"hi": 1}})
        assert sent.status_code == 202
        command = sent.json()
        assert (command["state"], command["device"], command["args"]) == (
            "queued",
            "pump-1",
            {"hi": 1},
        )
        done = wait_state(gateway, command["id"], "succeeded")
        assert done["result"] == {"hi": 1}
        assert list(done["times"]) == ["queued", "sent", "delivered", "succeeded"]  # type: ignore[call-overload]

        history = client.get("/api/devices/pump-1/commands").json()["commands"]
        assert [c["id"] for c in history] == [command["id"]]
        assert client.get("/api/devices/pump-1/commands?state=failed").json() == {"commands": []}
        one = client.get("/api/devices/pump-1").json()
        assert one["online"] and one["pending"] == 0 and one["last_command"]["id"] == command["id"]
        listed = client.get("/api/devices").json()
        assert [d["id"] for d in listed["devices"]] == ["pump-1"]
        assert all(s["ok"] for s in listed["shards"]) and len(listed["shards"]) == 4


def test_failures_and_rejections_are_recorded(gateway: RunningGateway, device: DeviceAgent) -> None:
    with gateway.client(Role.OPERATOR) as client:
        failed = client.post(
            "/api/devices/pump-1/commands", json={"name": "fail", "args": {"message": "boom"}}
        ).json()
        unknown = client.post(
            "/api/devices/pump-1/commands", json={"name": "no-such-command"}
        ).json()
    assert "boom" in str(wait_state(gateway, failed["id"], "failed")["error"])
    assert wait_state(gateway, unknown["id"], "rejected")["error"]


def test_idempotency_keys(gateway: RunningGateway, device: DeviceAgent) -> None:
    with gateway.client(Role.OPERATOR) as client:
        headers = {"Idempotency-Key": "order-42"}
        first = client.post("/api/devices/pump-1/commands", json={"name": "echo"}, headers=headers)
        again = client.post("/api/devices/pump-1/commands", json={"name": "echo"}, headers=headers)
        other = client.post(
            "/api/devices/pump-1/commands", json={"name": "echo", "args": {"x": 1}}, headers=headers
        )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert (other.status_code, error_code(other)) == (409, "conflict")


def test_cancel_before_delivery_only(gateway: RunningGateway, broker: BrokerHandle) -> None:
    with gateway.client(Role.ADMIN) as client:
        client.post("/api/devices", json={"id": "offline-1"})  # never connects
        command = client.post("/api/devices/offline-1/commands", json={"name": "echo"}).json()
        cancelled = client.post(f"/api/commands/{command['id']}/cancel")
        assert (cancelled.status_code, cancelled.json()["state"]) == (200, "cancelled")
        again = client.post(f"/api/commands/{command['id']}/cancel")
        assert (again.status_code, error_code(again)) == (409, "conflict")
        missing = client.post("/api/commands/0190aaaa-0000-7000-8000-000000000000/cancel")
        assert (missing.status_code, error_code(missing)) == (404, "not_found")


def test_queue_full(broker: BrokerHandle, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from broker_bridge.policy import DeliveryPolicy
    from tests.support.bridges import bridge_settings
    from tests.support.gateways import start_gateway

    running = start_gateway(
        bridge_settings(broker, tmp_path / "s", DeliveryPolicy(pending_limit=2))
    )
    try:
        with running.client(Role.ADMIN) as client:
            client.post("/api/devices", json={"id": "slow-1"})
            codes = [
                client.post("/api/devices/slow-1/commands", json={"name": "echo"}).status_code
                for _ in range(3)
            ]
            refused = client.post("/api/devices/slow-1/commands", json={"name": "echo"})
        assert codes == [202, 202, 429]
        assert error_code(refused) == "queue_full"
    finally:
        running.stop()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "bad_request"),
        (b"[]", 400, "bad_request"),
        (json.dumps({"args": {}}).encode(), 422, "bad_request"),
        (json.dumps({"name": "echo", "args": [1]}).encode(), 422, "bad_request"),
        (json.dumps({"name": "echo", "ttl": -1}).encode(), 422, "bad_request"),
        (json.dumps({"name": "echo", "ttl": "soon"}).encode(), 422, "bad_request"),
        (json.dumps({"name": "echo", "extra": 1}).encode(), 422, "bad_request"),
        (json.dumps({"name": "echo", "args": {"blob": "x" * 70_000}}).encode(), 413, "too_large"),
        (b"x" * (1024 * 1024 + 1), 413, "too_large"),
    ],
)
def test_bad_send_bodies(gateway: RunningGateway, body: bytes, status: int, code: str) -> None:
    with gateway.client(Role.ADMIN) as client:
        client.post("/api/devices", json={"id": "pump-2"})
        response = client.post(
            "/api/devices/pump-2/commands",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert (response.status_code, error_code(response)) == (status, code)
        assert client.get("/api/devices/pump-2/commands").json() == {"commands": []}


@pytest.mark.parametrize("bad_id", ["a%2Fb", "%2B", "%23", "%24SYS", "x" * 65, "a%00b", "%20"])
def test_bad_device_ids_in_paths(gateway: RunningGateway, bad_id: str) -> None:
    with gateway.client(Role.ADMIN) as client:
        for method, path in [
            ("GET", f"/api/devices/{bad_id}"),
            ("POST", f"/api/devices/{bad_id}/commands"),
        ]:
            response = client.request(method, path, json={"name": "echo"})
            assert response.status_code in (400, 404), (path, response.status_code)
            assert error_code(response) in ("bad_request", "not_found")
        created = client.post("/api/devices", json={"id": bad_id.replace("%2F", "/")})
        assert (created.status_code, error_code(created)) == (400, "bad_request")


def test_unknown_things(gateway: RunningGateway) -> None:
    with gateway.client(Role.ADMIN) as client:
        for response in (
            client.get("/api/devices/ghost"),
            client.post("/api/devices/ghost/commands", json={"name": "echo"}),
            client.get("/api/devices/ghost/commands"),
            client.delete("/api/devices/ghost"),
        ):
            assert (response.status_code, error_code(response)) == (404, "unknown_device")
        missing = client.get("/api/commands/nope")
        assert (missing.status_code, error_code(missing)) == (404, "not_found")
        assert error_code(client.get("/api/nothing-here")) == "not_found"
        twice = (
            client.post("/api/devices", json={"id": "dup-1"}),
            client.post("/api/devices", json={"id": "dup-1"}),
        )
        assert [r.status_code for r in twice] == [201, 409]
        assert error_code(twice[1]) == "conflict"
        bad_query = client.get("/api/devices/dup-1/commands?limit=0")
        assert (bad_query.status_code, error_code(bad_query)) == (400, "bad_request")


ROUTES = [
    ("GET", "/api/devices", Role.VIEWER),
    ("GET", "/api/devices/dev-x", Role.VIEWER),
    ("GET", "/api/devices/dev-x/commands", Role.VIEWER),
    ("GET", "/api/commands/some-id", Role.VIEWER),
    ("GET", "/api/fleet", Role.VIEWER),
    ("GET", "/metrics", Role.VIEWER),
    ("POST", "/api/devices/dev-x/commands", Role.OPERATOR),
    ("POST", "/api/commands/some-id/cancel", Role.OPERATOR),
    ("POST", "/api/devices", Role.ADMIN),
    ("DELETE", "/api/devices/dev-x", Role.ADMIN),
]


@pytest.mark.parametrize(("method", "path", "needed"), ROUTES)
def test_every_route_checks_token_and_role(
    gateway: RunningGateway, method: str, path: str, needed: Role
) -> None:
    body = {"id": "dev-y"} if path == "/api/devices" else {"name": "echo"}
    with gateway.client(None) as anonymous:
        response = anonymous.request(method, path, json=body)
        assert (response.status_code, error_code(response)) == (401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        wrong = anonymous.request(
            method, path, json=body, headers={"Authorization": "Bearer nope-nope-nope-nope"}
        )
        assert (wrong.status_code, error_code(wrong)) == (401, "unauthorized")
    for role in Role:
        with gateway.client(role) as client:
            response = client.request(method, path, json=body)
            if role < needed:
                assert (response.status_code, error_code(response)) == (403, "forbidden"), role
                # a refused call changed nothing
                assert client.get("/api/devices/dev-y").status_code == 404
            else:
                assert response.status_code not in (401, 403), role


def test_fleet_metrics_health_openapi(gateway: RunningGateway, device: DeviceAgent) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with gateway.client(Role.VIEWER) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["broker"] is True
        fleet = wait_until(
            lambda: (f := client.get("/api/fleet").json())["devices"]["online"] == 1 and f
        )
        assert fleet["devices"] == {"total": 1, "online": 1, "offline": 0}
        metrics = {m.name: m for m in text_string_to_metric_families(client.get("/metrics").text)}
        online = [
            s for s in metrics["tether_devices"].samples if s.labels == {"presence": "online"}
        ]
        assert online[0].value == 1
        spec = client.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        assert {
            "/api/devices",
            "/api/devices/{device_id}/commands",
            "/api/commands/{command_id}/cancel",
        } <= set(spec["paths"])
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


def test_revoke_through_the_api(gateway: RunningGateway, device: DeviceAgent) -> None:
    with gateway.client(Role.ADMIN) as client:
        assert client.delete("/api/devices/pump-1").status_code == 200
        assert client.get("/api/devices/pump-1").json()["revoked"] is True
        refused = client.post("/api/devices/pump-1/commands", json={"name": "echo"})
        assert (refused.status_code, error_code(refused)) == (404, "unknown_device")
    assert wait_until(lambda: not device.connected, what="the revoked agent is cut off")


def test_a_revoked_device_keeps_its_record_and_history(
    gateway: RunningGateway, device: DeviceAgent
) -> None:
    with gateway.client(Role.ADMIN) as client:
        command = client.post("/api/devices/pump-1/commands", json={"name": "echo"}).json()
        wait_state(gateway, command["id"], "succeeded")
        revoked = client.delete("/api/devices/pump-1").json()
        assert revoked["revoked"] is True and revoked["revoked_at"]
    with gateway.client(Role.VIEWER) as viewer:
        one = viewer.get("/api/devices/pump-1")
        assert one.status_code == 200
        record = one.json()
        assert (record["revoked"], record["revoked_at"], record["online"]) == (
            True,
            revoked["revoked_at"],
            False,
        )
        assert record["last_command"]["id"] == command["id"]
        history = viewer.get("/api/devices/pump-1/commands")
        assert history.status_code == 200
        assert [(c["id"], c["state"]) for c in history.json()["commands"]] == [
            (command["id"], "succeeded")
        ]
        presence = viewer.get("/api/devices/pump-1/events?kind=presence")
        assert presence.status_code == 200  # its presence history stays readable too
        assert presence.json()["events"][0]["data"]["revoked"] is True
        assert viewer.get("/api/devices").json()["devices"] == []
        listed = viewer.get("/api/devices?revoked=true").json()["devices"]
        assert [(d["id"], d["revoked"]) for d in listed] == [("pump-1", True)]
        assert viewer.get("/api/devices?revoked=false").json()["devices"] == []
        assert error_code(viewer.get("/api/devices?revoked=yes")) == "bad_request"
        assert error_code(viewer.get("/api/devices/ghost/commands")) == "unknown_device"
    with gateway.client(Role.ADMIN) as client:
        refused = client.post("/api/devices/pump-1/commands", json={"name": "echo"})
        assert (refused.status_code, error_code(refused)) == (404, "unknown_device")
        again = client.delete("/api/devices/pump-1")
        assert (again.status_code, error_code(again)) == (404, "unknown_device")
        assert client.post("/api/devices", json={"id": "pump-1"}).status_code == 201
        back = client.get("/api/devices/pump-1").json()
        assert (back["revoked"], back["revoked_at"]) == (False, None)
        kept = client.get("/api/devices/pump-1/commands").json()["commands"]
        assert [c["id"] for c in kept] == [command["id"]]
