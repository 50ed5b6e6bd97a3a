"""The contract with the reconnecting clients people already use (npm ``partysocket`` and
``eventsource``): both follow the stream, survive a gateway restart by themselves and resume
from their last event id with nothing missed and nothing twice."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.agent import DeviceAgent
from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.processes import ADMIN_TOKEN, GatewayProcess

pytestmark = pytest.mark.broker

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), (
        "node and npm are needed (scripts/bootstrap.sh installs them)"
    )
    if not (NODE_DIR / "node_modules" / "partysocket").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=300
        )
    return NODE_DIR


@pytest.fixture
def agent(broker: BrokerHandle, gateway_process: GatewayProcess) -> Iterator[DeviceAgent]:
    with gateway_process.api() as api, DemoAgent(broker, api, "node-dev") as running:
        yield running


class NodeClient:
    def __init__(self, directory: Path, url: str) -> None:
        self.proc = subprocess.Popen(
            ["node", "contract-client.mjs", url, ADMIN_TOKEN, "node-dev"],
            cwd=directory,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        out = self.proc.stdout
        assert out is not None
        threading.Thread(
            target=lambda: [self.lines.put(json.loads(x)) for x in out], daemon=True
        ).start()

    def until(self, predicate: Any, timeout: float = 30) -> None:
        while not predicate(self.seen):
            self.seen.append(self.lines.get(timeout=timeout))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def finished(seen: list[dict[str, Any]], via: str, command_id: str | None) -> bool:
    return any(
        s.get("via") == via
        and s.get("state") == "succeeded"
        and (command_id is None or s.get("cmd") == command_id)
        for s in seen
    )


def test_partysocket_and_eventsource_resume_after_a_restart(
    node_modules: Path, gateway_process: GatewayProcess, agent: DeviceAgent
) -> None:
    client = NodeClient(node_modules, gateway_process.url)
    try:
        client.until(lambda seen: finished(seen, "ws", None) and finished(seen, "sse", None))
        first = next(s["cmd"] for s in client.seen if s.get("type") == "accepted")

        gateway_process.stop()
        gateway_process.start()
        with gateway_process.api() as api:
            second = api.post("/api/devices/node-dev/commands", json={"name": "echo"}).json()["id"]
        client.until(
            lambda seen: finished(seen, "ws", second) and finished(seen, "sse", second), 60
        )
    finally:
        client.stop()

    for via in ("ws", "sse"):
        opens = [s for s in client.seen if s.get("via") == via and s.get("phase") == "open"]
        assert len(opens) >= 2, f"{via} did not reconnect by itself"
        events = [
            (s["cmd"], s["state"])
            for s in client.seen
            if s.get("via") == via and s.get("kind") == "command"
        ]
        assert len(events) == len(set(events)), f"{via} saw an event twice"
        for command in (first, second):
            states = [state for cmd, state in events if cmd == command]
            assert states == ["queued", "sent", "delivered", "succeeded"], (via, command, states)
    resumed = [s for s in client.seen if s.get("via") == "ws" and s.get("phase") == "open"][1]
    assert resumed["resumed_from"], "partysocket reconnected without its cursor"
