"""On ``/ws`` the ``accepted`` frame of a send comes before every event of that command, under load.

A real stack (gateway, bridge, 4-shard store, Mosquitto) and a fleet of fast simulated devices:
several connections each fire a burst of sends at once, and each connection's frames are checked
in the order they arrived.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from devices.provision import DeviceCredentials
from devices.simulator import SimOptions, Simulator
from tests.support.brokers import BrokerHandle
from tests.support.gateways import TOKENS, RunningGateway
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker

DEVICES = 8
CONNECTIONS = 4
SENDS_PER_CONNECTION = 150
TIMEOUT = 60.0


class Fleet:
    """Simulated devices with no handler latency, on their own event loop thread."""

    def __init__(self, broker: BrokerHandle, creds: list[DeviceCredentials]) -> None:
        options = SimOptions(
            host=broker.host,
            port=broker.port,
            latency=0.0,
            report_every=0,
            reconnect_base=0.05,
            reconnect_cap=0.5,
            seed=20,
        )
        self.connected = threading.Event()
        self.simulator = Simulator(options, creds, report=self._report)
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name="fleet", daemon=True)
        self.thread.start()

    def _report(self, record: dict[str, Any]) -> None:
        if record["type"] == "all_connected":
            self.connected.set()

    def _main(self) -> None:
        async def run() -> None:
            self.stop_event = asyncio.Event()
            await self.simulator.run(self.stop_event)

        self.loop.run_until_complete(run())
        self.loop.close()

    def stop(self) -> None:
        wait_until(lambda: self.stop_event is not None, what="the fleet loop")
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


@pytest.fixture
def fleet(broker: BrokerHandle, gateway: RunningGateway) -> Iterator[list[str]]:
    ids = [f"fast-{i}" for i in range(DEVICES)]
    with gateway.client(Role.ADMIN) as api:
        creds = []
        for device_id in ids:
            body = api.post("/api/devices", json={"id": device_id}).json()
            creds.append(DeviceCredentials(device_id, body["username"], body["password"]))
    running = Fleet(broker, creds)
    try:
        assert running.connected.wait(20), "the simulated fleet did not connect"
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
