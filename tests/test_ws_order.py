"""On ``/ws`` the ``accepted`` frame of a send comes before every event of that command, under load.

A real stack (gateway, bridge, 4-shard store, Mosquitto) and a fleet of fast simulated devices:
several connections each fire a burst of sends at once, and each connection's frames are checked
in the order they arrived.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support.brokers import BrokerHandle, Credentials
from tests.support.chaos import SimFleet
from tests.support.gateways import TOKENS, RunningGateway
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker

DEVICES = 8
CONNECTIONS = 4
SENDS_PER_CONNECTION = 150
TIMEOUT = 60.0


@pytest.fixture
def fleet(broker: BrokerHandle, gateway: RunningGateway) -> Iterator[list[str]]:
    ids = [f"fast-{i}" for i in range(DEVICES)]
    with gateway.client(Role.ADMIN) as api:
        creds = []
        for device_id in ids:
            body = api.post("/api/devices", json={"id": device_id}).json()
            creds.append(Credentials(device_id, body["username"], body["password"]))
    running = SimFleet(broker, creds, seed=20).start(20)  # no handler latency
    try:
        yield ids
    finally:
        running.stop()


def ws(gateway: RunningGateway) -> ClientConnection:
    return connect(
        f"{gateway.ws_url}?token={TOKENS[Role.OPERATOR]}",
        open_timeout=10,
        close_timeout=2,
        max_size=None,
    )


def read_until_done(conn: ClientConnection, sends: int, deadline: float) -> list[dict[str, Any]]:
    """Every frame until all ``sends`` are accepted and each of them has succeeded."""
    frames: list[dict[str, Any]] = []
    accepted: set[str] = set()
    succeeded: set[str] = set()
    while len(accepted) < sends or not accepted <= succeeded:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(accepted)}/{sends} accepted, {len(succeeded)} succeeded"
        frame: dict[str, Any] = json.loads(conn.recv(timeout=left))
        frames.append(frame)
        assert frame["type"] != "error", frame
        if frame["type"] == "accepted":
            accepted.add(frame["command"]["id"])
        elif frame["type"] == "event" and frame["data"].get("state") == "succeeded":
            succeeded.add(frame["data"]["id"])
    return frames


def out_of_order(frames: list[dict[str, Any]]) -> list[str]:
    """Events of this connection's sends that came before the send's ``accepted`` frame."""
    accepted_at = {f["command"]["id"]: i for i, f in enumerate(frames) if f["type"] == "accepted"}
    return [
        f"{f['data']['id']} {f['data']['state']} at {i}, accepted at {accepted_at[f['data']['id']]}"
        for i, f in enumerate(frames)
        if f["type"] == "event"
        and f["kind"] == "command"
        and f["data"]["id"] in accepted_at
        and i < accepted_at[f["data"]["id"]]
    ]


def test_accepted_precedes_every_event_of_its_command_under_load(
    gateway: RunningGateway, fleet: list[str]
) -> None:
    deadline = time.monotonic() + TIMEOUT
    with ExitStack() as stack:
        connections = [stack.enter_context(ws(gateway)) for _ in range(CONNECTIONS)]
        results: dict[int, list[dict[str, Any]]] = {}
        failures: list[BaseException] = []

        def drive(n: int, conn: ClientConnection) -> None:
            try:
                for i in range(SENDS_PER_CONNECTION):
                    frame = {
                        "type": "send",
                        "ref": f"c{n}-{i}",
                        "device": fleet[(n + i) % len(fleet)],
                        "name": "echo",
                        "args": {"n": i},
                    }
                    conn.send(json.dumps(frame))
                results[n] = read_until_done(conn, SENDS_PER_CONNECTION, deadline)
            except BaseException as exc:  # reported by the main thread
                failures.append(exc)

        threads = [
            threading.Thread(target=drive, args=(n, conn)) for n, conn in enumerate(connections)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 5)
    assert not failures, failures
    assert len(results) == CONNECTIONS
    for n, frames in sorted(results.items()):
        refs = {f["ref"] for f in frames if f["type"] == "accepted"}
        assert refs == {f"c{n}-{i}" for i in range(SENDS_PER_CONNECTION)}
        wrong = out_of_order(frames)
        assert not wrong, f"connection {n}: {len(wrong)} events before accepted: {wrong[:5]}"
