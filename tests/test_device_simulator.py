"""The fleet simulator against a real Mosquitto: many devices in one asyncio loop, same rules."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.provision import DeviceCredentials, load_credentials, sim_ids
from devices.simulator import SimOptions, Simulator
from tests.support.brokers import PREFIX, BrokerHandle
from tests.support.devices import Watcher, command
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until
from tether.protocol import AckStatus, decode_ack, decode_status

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]


class RunningFleet:
    """A :class:`Simulator` on its own event loop thread, as ``tether simulate`` runs it."""

    def __init__(self, broker: BrokerHandle, count: int, **options: Any) -> None:
        ids = sim_ids(count)
        self.creds = [DeviceCredentials(c.device_id, c.username, c.password)
                      for c in broker.provision(*ids)]  # fmt: skip
        self.reports: list[dict[str, Any]] = []
        self.connected = threading.Event()
        opts = SimOptions(
            host=broker.host,
            port=broker.port,
            latency=0.0,
            report_every=0,
            reconnect_base=0.05,
            reconnect_cap=0.5,
            seed=7,
            **options,
        )
        self.simulator = Simulator(opts, self.creds, report=self._report)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="fleet")
        self._thread.start()

    def _report(self, record: dict[str, Any]) -> None:
        self.reports.append(record)
        if record["type"] == "all_connected":
            self.connected.set()

    def _main(self) -> None:
        async def run() -> None:
            self._stop = asyncio.Event()
            await self.simulator.run(self._stop)

        self._loop.run_until_complete(run())
        self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            wait_until(lambda: self._stop is not None, what="the fleet loop")
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
            assert not self._thread.is_alive()


@pytest.fixture
def fleet_factory(broker: BrokerHandle) -> Iterator[Any]:
    fleets: list[RunningFleet] = []

    def make(count: int, **options: Any) -> RunningFleet:
        fleet = RunningFleet(broker, count, **options)
        fleets.append(fleet)
        assert fleet.connected.wait(20), fleet.reports
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()


def test_a_simulated_fleet_connects_answers_and_says_offline(
    broker: BrokerHandle, fleet_factory: Any
) -> None:
    observer = ProbeClient(
        broker.host, broker.port, username=broker.admin_username, password=broker.admin_password
    ).connect_ok()
    observer.subscribe(f"{PREFIX}/+/ack")
    fleet: RunningFleet = fleet_factory(12)
    assert fleet.simulator.stats.connected == 12
    watcher = Watcher(broker, "sim-00003")
    try:
        sent = {}
        for creds in fleet.creds:
            cmd = command("echo", {"from": creds.device_id})
            sent[cmd.id] = creds.device_id
            observer.publish(f"{PREFIX}/{creds.device_id}/cmd", cmd.encode())
        finals: dict[str, Any] = {}
        while len(finals) < len(sent):
            ack = decode_ack(observer.next_message().payload)
            if ack.status.is_final:
                finals[ack.id] = ack
        assert {i: a.result for i, a in finals.items()} == {
            i: {"from": device} for i, device in sent.items()
        }
        # Same rules as the agent: a duplicate gets the stored ack; config is per device.
        cfg = command("set_config", {"mode": "eco"})
        watcher.send(cfg)
        first = watcher.final(cfg.id)
        watcher.send(cfg)
        watcher.wait(lambda w: len(w.finals(cfg.id)) == 2, what="the re-sent ack")
        assert watcher.finals(cfg.id) == [first, first]
        get = command("get_config", {"key": "mode"})
        watcher.send(get)
        assert watcher.final(get.id).result == {"key": "mode", "value": "eco"}
        assert fleet.simulator.stats.duplicates == 1
        bad = command("sleep", {"seconds": -1})
        watcher.send(bad)
        assert watcher.final(bad.id).status is AckStatus.REJECTED
    finally:
        fleet.stop()
        watcher.wait_online(False)  # a clean stop says offline itself
        watcher.close()
    assert fleet.reports[-1]["type"] == "stopped"
    assert fleet.reports[-1]["connected"] == 0
    observer.disconnect()


def test_failure_rate_and_random_disconnects(broker: BrokerHandle, fleet_factory: Any) -> None:
    fleet: RunningFleet = fleet_factory(4, failure_rate=1.0, disconnect_every=0.5)
    stats = fleet.simulator.stats
    wait_until(lambda: stats.disconnects >= 4, timeout=20, what="random disconnects")
    wait_until(lambda: stats.connects >= 8, timeout=20, what="reconnects")
    watcher = Watcher(broker, "sim-00001")
    try:
        cmd = command("echo")
        watcher.send(cmd)  # queued in the session if the device is between connections
        final = watcher.final(cmd.id, timeout=20)
        assert (final.status, final.error) == (AckStatus.FAILED, "simulated failure")
    finally:
        watcher.close()


def test_tether_simulate_provisions_runs_and_stops_on_sigterm(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    creds_file = tmp_path / "fleet.json"
    argv = [
        sys.executable, "-m", "tether_cli", "simulate", "3",
        "--provision", "--credentials", str(creds_file),
        "--broker", f"{broker.host}:{broker.port}",
        "--report-every", "0", "--latency", "0",
    ]  # fmt: skip
    env = {
        **os.environ,
        "TETHER_ADMIN_USERNAME": broker.admin_username,
        "TETHER_ADMIN_PASSWORD": broker.admin_password,
    }
    watcher = Watcher(broker, "sim-00002")
    try:
        for round_ in (1, 2):  # the second run finds the devices and gives them new passwords
            with subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if json.loads(line)["type"] == "all_connected":
                        break
                cmd = command("echo", {"round": round_})
                watcher.send(cmd)
                assert watcher.final(cmd.id).result == {"round": round_}
                proc.send_signal(signal.SIGTERM)
                rest = [json.loads(line) for line in proc.stdout]
                assert proc.wait(20) == 0
            assert rest[-1]["type"] == "stopped" and rest[-1]["devices"] == 3
            watcher.wait_online(False, count=round_)
    finally:
        watcher.close()
    saved = load_credentials(creds_file)
    assert [c.device_id for c in saved] == ["sim-00001", "sim-00002", "sim-00003"]
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    last = ProbeClient(
        broker.host, broker.port, client_id="sim-00001", username="sim-00001",
        password=saved[0].password,
    )  # fmt: skip
    assert not last.connect().is_failure  # the file holds the passwords now in force
    last.disconnect()


def test_simulate_without_credentials_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    result = subprocess.run(
        [sys.executable, "-m", "tether_cli", "simulate", "2", "--broker", "127.0.0.1:1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--credentials" in result.stderr and "Traceback" not in result.stderr


def test_status_payloads_of_the_fleet_follow_the_contract(
    broker: BrokerHandle, fleet_factory: Any
) -> None:
    def observer() -> ProbeClient:
        probe = ProbeClient(
            broker.host, broker.port, username=broker.admin_username, password=broker.admin_password
        ).connect_ok()
        probe.subscribe(f"{PREFIX}/+/status")
        return probe

    def statuses(probe: ProbeClient) -> dict[str, tuple[bool, Any]]:
        seen: dict[str, tuple[bool, Any]] = {}
        while len(seen) < 3:
            message = probe.next_message()
            seen[message.topic] = (bool(message.retain), decode_status(message.payload))
        return seen

    live = observer()
    fleet_factory(3)
    assert all(s.online and s.agent == "tether-simulator" for _, s in statuses(live).values())
    late = observer()  # after the broker has them: it hands over the retained copies
    retained = statuses(late)
    assert all(r and s.online and s.at for r, s in retained.values())
    live.disconnect()
    late.disconnect()


def test_a_connection_lost_before_its_connack_fails_the_attempt_at_once(
    broker: BrokerHandle,
) -> None:
    """aiomqtt alone would wait out its timeout (here the keepalive, 25 s) for a CONNACK on a
    connection that is already gone; a flapping device then sat out of the fleet that long."""
    import aiomqtt

    from devices.config import AgentSettings
    from devices.simulator import DeviceClient

    (creds,) = broker.provision("cut-early")
    settings = AgentSettings(
        creds.device_id, broker.host, broker.port, creds.username, creds.password, prefix=PREFIX
    )

    class CutBeforeConnack(DeviceClient):
        def _watch_reads(self, sock: Any) -> None:
            self.cut()  # the network fails between the CONNECT and its CONNACK
            super()._watch_reads(sock)

    async def attempt() -> None:
        client = CutBeforeConnack(settings)
        assert client.timeout >= 25
        with pytest.raises(aiomqtt.MqttError, match="before CONNACK"):
            async with asyncio.timeout(5):
                await client.__aenter__()

    asyncio.run(attempt())
