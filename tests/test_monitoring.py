"""Fleet monitoring against the real stack: presence from Last Wills, $SYS figures, metrics."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.brokers import BrokerHandle
from tests.support.gateways import RunningGateway
from tests.support.waiting import wait_until
from tether_cli.fleet import numbered_ids, provision_fleet
from ui_gateway.auth import Role

pytestmark = pytest.mark.broker

KEEPALIVE = 2


class Simulator:
    def __init__(self, broker: BrokerHandle, credentials: Path, count: int, log: Path) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "tether_cli",
            "simulate",
            str(count),
            "--credentials",
            str(credentials),
            "--broker",
            f"{broker.host}:{broker.port}",
            "--keepalive",
            str(KEEPALIVE),
            "--latency",
            "0.001",
        ]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


@pytest.fixture
def fleets(
    broker: BrokerHandle, gateway: RunningGateway, tmp_path: Path
) -> Iterator[tuple[Simulator, Simulator]]:
    with gateway.client(Role.ADMIN) as admin:
        provision_fleet(admin, numbered_ids(40, "steady-"), tmp_path / "steady.json")
        provision_fleet(admin, numbered_ids(10, "flaky-"), tmp_path / "flaky.json")
    steady = Simulator(broker, tmp_path / "steady.json", 40, tmp_path / "steady.log")
    flaky = Simulator(broker, tmp_path / "flaky.json", 10, tmp_path / "flaky.log")
    steady.start()
    flaky.start()
    yield steady, flaky
    flaky.stop()
    steady.stop()


def fleet(gateway: RunningGateway) -> dict[str, object]:
    with gateway.client(Role.VIEWER) as client:
        return client.get("/api/fleet").json()  # type: ignore[no-any-return]


def test_presence_follows_the_fleet_and_counts_reconnects(
    gateway: RunningGateway, fleets: tuple[Simulator, Simulator]
) -> None:
    _, flaky = fleets
    wait_until(
        lambda: fleet(gateway)["devices"] == {"total": 50, "online": 50, "offline": 0},
        60,
        "50 online",
    )
    killed_at = time.monotonic()
    flaky.kill()  # abruptly: no DISCONNECT, the broker publishes each Last Will
    wait_until(
        lambda: fleet(gateway)["devices"]["offline"] == 10, 1.5 * KEEPALIVE + 5, "10 offline"
    )
    assert time.monotonic() - killed_at <= 1.5 * KEEPALIVE + 5
    with gateway.client(Role.VIEWER) as client:
        devices = {d["id"]: d for d in client.get("/api/devices").json()["devices"]}
    assert {i for i, d in devices.items() if not d["online"]} == set(numbered_ids(10, "flaky-"))

    flaky.start()
    wait_until(lambda: fleet(gateway)["devices"]["online"] == 50, 60, "back online")
    with gateway.client(Role.VIEWER) as client:
        flapper = client.get("/api/devices/flaky-00001").json()
        steady = client.get("/api/devices/steady-00001").json()
    assert (flapper["reconnects_last_hour"], steady["reconnects_last_hour"]) == (2, 1)


def test_sys_figures_and_latency_histograms_move_under_load(
    gateway: RunningGateway, fleets: tuple[Simulator, Simulator]
) -> None:
    wait_until(lambda: fleet(gateway)["devices"]["online"] == 50, 60, "50 online")
    broker_figures = wait_until(
        lambda: fleet(gateway)["broker"]["figures"].get("messages_received_total"),
        15,
        "$SYS figures",  # type: ignore[index]
    )
    before = float(broker_figures)
    ids = []
    with gateway.client(Role.OPERATOR) as client:
        for n in range(200):
            device = f"steady-{n % 40 + 1:05d}"
            ids.append(
                client.post(
                    f"/api/devices/{device}/commands", json={"name": "echo", "args": {"n": n}}
                ).json()["id"]
            )
        wait_until(
            lambda: fleet(gateway)["commands_by_state"].get("succeeded") == 200,
            60,
            "the burst done",  # type: ignore[union-attr]
        )
    moved = wait_until(
        lambda: (
            float(fleet(gateway)["broker"]["figures"]["messages_received_total"]) >= before + 400
        ),  # type: ignore[index]
        15,
        "$SYS to count the burst (200 received + 200 succeeded acks at least)",
    )
    assert moved
    summary = fleet(gateway)
    latency = summary["latency_ms"]
    assert latency["end_to_end"]["count"] == 200  # type: ignore[index]
    assert 0 < latency["end_to_end"]["p50"] <= latency["end_to_end"]["p99"]  # type: ignore[index,operator]

    with gateway.client(Role.VIEWER) as client:
        text = client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    hop = families["tether_command_hop_seconds"]
    counts = {s.labels["hop"]: s.value for s in hop.samples if s.name.endswith("_count")}
    assert counts["end_to_end"] == 200 and counts["accepted_to_sent"] >= 200
    assert families["tether_broker_clients_connected"].samples[0].value >= 51  # 50 devices + bridge
    labels = {tuple(sorted(s.labels)) for f in families.values() for s in f.samples}
    assert all("device" not in names for names in labels)  # no per-device series

    from tests.support.gateways import TOKENS

    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "tether_cli",
            "status",
            "--url",
            gateway.url,
            "--token",
            TOKENS[Role.VIEWER],
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "broker   connected  mosquitto version 2.0" in status
    assert "devices  50 total, 50 online, 0 offline" in status
    assert "end_to_end" in status and "slowest devices" in status
