"""WebSocket and SSE streams against the real stack: live, resume by cursor, reset, slow clients."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from devices.agent import DeviceAgent
from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.gateways import TOKENS, RunningGateway
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker


@pytest.fixture
def device(broker: BrokerHandle, gateway: RunningGateway) -> Iterator[DeviceAgent]:
    with gateway.client(Role.ADMIN) as api, DemoAgent(broker, api, "pump-1") as running:
        yield running


def ws(
    gateway: RunningGateway, role: Role = Role.OPERATOR, cursor: str | None = None
) -> ClientConnection:
    url = f"{gateway.ws_url}?token={TOKENS[role]}"
    if cursor:
        url += f"&last_event_id={cursor}"
    return connect(url, open_timeout=10, close_timeout=2)


def next_json(conn: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(conn.recv(timeout=timeout))
    return message


def until(conn: ClientConnection, predicate: Any, timeout: float = 10) -> list[dict[str, Any]]:
    seen = []
    while True:
        message = next_json(conn, timeout)
        seen.append(message)
        if predicate(message):
            return seen


def test_send_over_websocket_and_follow_to_succeeded(
    gateway: RunningGateway, device: DeviceAgent
) -> None:
    with ws(gateway) as conn:
        conn.send(
            json.dumps(
                {"type": "send", "ref": "r1", "device": "pump-1", "name": "echo", "args": {"a": 1}}
            )
        )
        accepted = until(conn, lambda m: m["type"] == "accepted")[-1]
        assert accepted["ref"] == "r1"
        command_id = accepted["command"]["id"]
        events = until(
            conn,
            lambda m: (
                m["type"] == "event"
                and m["kind"] == "command"
                and m["data"]["id"] == command_id
                and m["data"]["state"] == "succeeded"
            ),
        )
        states = [
            m["data"]["state"]
            for m in events
            if m["type"] == "event" and m["data"].get("id") == command_id
        ]
        assert states[-1] == "succeeded" and states == sorted(
            states, key=["queued", "sent", "delivered", "succeeded"].index
        )
        assert events[-1]["data"]["result"] == {"a": 1}
        conn.send(json.dumps({"type": "ping", "ref": "p"}))
        assert until(conn, lambda m: m["type"] == "pong")[-1] == {"type": "pong", "ref": "p"}


def test_websocket_errors_name_the_problem(gateway: RunningGateway) -> None:
    with ws(gateway) as conn:
        for frame, code in [
            ("not json", "bad_request"),
            (json.dumps({"type": "launch"}), "bad_request"),
            (json.dumps({"type": "send", "ref": 1, "device": "a/b", "name": "x"}), "bad_request"),
            (
                json.dumps({"type": "send", "ref": 2, "device": "ghost", "name": "x"}),
                "unknown_device",
            ),
            (
                json.dumps(
                    {
                        "type": "send",
                        "ref": 3,
                        "device": "ghost",
                        "name": "x",
                        "args": {"b": "x" * 70000},
                    }
                ),
                "too_large",
            ),
            (json.dumps({"type": "cancel", "ref": 4, "command_id": "nope"}), "not_found"),
        ]:
            conn.send(frame)
            reply = until(conn, lambda m: m["type"] == "error")[-1]
            assert reply["error"]["code"] == code, frame[:60]
        conn.send(b"\x00binary")
        assert until(conn, lambda m: m["type"] == "error")[-1]["error"]["code"] == "bad_request"
        conn.send(json.dumps({"type": "ping", "ref": "after-binary"}))
        assert until(conn, lambda m: m["type"] == "pong")[-1]["ref"] == "after-binary"
    with ws(gateway, Role.VIEWER) as viewer:
        viewer.send(json.dumps({"type": "send", "ref": "v", "device": "ghost", "name": "x"}))
        assert until(viewer, lambda m: m["type"] == "error")[-1]["error"]["code"] == "forbidden"


@pytest.mark.parametrize(
    "query",
    ["", "?token=wrong-token-000000000", f"?token={TOKENS[Role.VIEWER]}&last_event_id=garbage"],
)
def test_websocket_refuses_before_upgrading(gateway: RunningGateway, query: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.ws_url + query, open_timeout=5)
    assert refused.value.response.status_code in (400, 401)
    body = json.loads(refused.value.response.body or b"{}")
    assert body["error"]["code"] in ("bad_request", "unauthorized")


def test_resume_from_cursor_gets_exactly_the_missed_events(
    gateway: RunningGateway, device: DeviceAgent
) -> None:
    with ws(gateway) as conn:
        conn.send(json.dumps({"type": "send", "ref": "warm", "device": "pump-1", "name": "echo"}))
        first = until(
            conn, lambda m: m["type"] == "event" and m["data"].get("state") == "succeeded"
        )
        cursor = [m for m in first if m["type"] == "event"][-1]["id"]

    # 50 commands happen while this client is away, seen by a second client from "now".
    with ws(gateway) as witness:
        ids = []
        for n in range(50):
            witness.send(
                json.dumps(
                    {"type": "send", "ref": n, "device": "pump-1", "name": "echo", "args": {"n": n}}
                )
            )
        done: set[str] = set()
        seen_by_witness = []
        for message in iter(lambda: next_json(witness), None):
            if message["type"] == "accepted":
                ids.append(message["command"]["id"])
            elif message["type"] == "event":
                seen_by_witness.append(
                    (message["kind"], message["data"].get("id"), message["data"].get("state"))
                )
                if message["data"].get("state") == "succeeded":
                    done.add(message["data"]["id"])
            if len(ids) == 50 and done >= set(ids):
                break

    with ws(gateway, cursor=cursor) as resumed:
        replayed = []
        while len([r for r in replayed if r[2] == "succeeded"]) < 50:
            message = next_json(resumed)
            assert message["type"] == "event"
            replayed.append(
                (message["kind"], message["data"].get("id"), message["data"].get("state"))
            )
    assert replayed == seen_by_witness  # the same events, in the same order: no gap, no duplicate
    assert {r[1] for r in replayed if r[0] == "command"} == set(ids)


def test_stale_cursor_gets_a_reset(gateway: RunningGateway, device: DeviceAgent) -> None:
    from broker_bridge.store import jobs

    store = gateway.bridge.store
    with ws(gateway) as conn:
        conn.send(json.dumps({"type": "send", "ref": 1, "device": "pump-1", "name": "echo"}))
        until(conn, lambda m: m["type"] == "event" and m["data"].get("state") == "succeeded")
    old = "c1." + "-".join(["0"] * store.shard_count)
    for shard in range(store.shard_count):
        store.write_shard(shard, lambda tx: jobs.prune_events(tx, keep=1)).result()
    with ws(gateway, cursor=old) as conn:
        assert next_json(conn)["type"] == "reset"
        conn.send(json.dumps({"type": "ping", "ref": "still-served"}))
        assert next_json(conn) == {"type": "pong", "ref": "still-served"}


def read_sse(
    gateway: RunningGateway, last_id: str | None, stop: Any
) -> list[tuple[str, str, dict[str, Any]]]:
    """Read events until ``stop(events)`` is true; each is (id, event, data)."""
    headers = {"Authorization": f"Bearer {TOKENS[Role.VIEWER]}"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    out: list[tuple[str, str, dict[str, Any]]] = []
    with httpx.stream("GET", f"{gateway.url}/api/events", headers=headers, timeout=15) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "id" in fields:
                    out.append((fields["id"], fields["event"], json.loads(fields["data"])))
                    if stop(out):
                        return out
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                fields[key] = value
    raise AssertionError("the stream ended")


def test_sse_resumes_from_last_event_id(gateway: RunningGateway, device: DeviceAgent) -> None:
    with gateway.client(Role.OPERATOR) as client:
        ids = [
            client.post(
                "/api/devices/pump-1/commands", json={"name": "echo", "args": {"n": n}}
            ).json()["id"]
            for n in range(5)
        ]

    def all_done(events: list[tuple[str, str, dict[str, Any]]]) -> bool:
        finished = {
            e[2]["id"] for e in events if e[1] == "command" and e[2]["state"] == "succeeded"
        }
        return finished >= set(ids)

    beginning = "c1." + "-".join(["0"] * 4)
    everything = read_sse(gateway, beginning, all_done)
    assert sum(1 for e in everything if e[1] == "command") == 20  # 4 hops x 5 commands
    middle = len(everything) // 2
    rest = read_sse(
        gateway, everything[middle][0], lambda events: len(events) == len(everything) - middle - 1
    )
    assert rest == everything[middle + 1 :]


def test_a_client_that_never_reads_is_cut_off(gateway: RunningGateway, device: DeviceAgent) -> None:
    """A raw socket that upgrades and then never reads: the server drops it, memory stays flat."""
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        (
            f"GET /ws?token={TOKENS[Role.VIEWER]} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    app = gateway.app_gateway
    wait_until(lambda: app.service.live_subscribers >= 1, what="the slow client subscribed")
    stop = threading.Event()

    def flood() -> None:
        with gateway.client(Role.OPERATOR) as client:
            n = 0
            while not stop.is_set() and n < 20000:
                client.post(
                    "/api/devices/pump-1/commands",
                    json={"name": "echo", "args": {"pad": "x" * 2000}},
                )
                n += 1

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        wait_until(lambda: app.counters.get("ws_too_slow", 0) >= 1, 120, "the slow client cut off")
    finally:
        stop.set()
        flooder.join(30)
        sock.close()
    assert app.service.live_subscribers == 0
