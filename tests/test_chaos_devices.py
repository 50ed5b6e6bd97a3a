"""Chaos: devices that crash mid-command, flap, or stay away longer than their session or TTL.

Builds on ``test_device_crash.py`` (one agent killed once in a blocking handler) with several
``tether device`` processes SIGKILLed again and again while they work through a queue.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import store_reader
from tests.support.bridges import BridgeHandle
from tests.support.brokers import BrokerHandle
from tests.support.chaos import (
    DeviceProcess,
    Fleet,
    SimFleet,
    check,
    ledger,
    runs_by_id,
    settle,
)
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]


@pytest.fixture
def device_processes(
    broker: BrokerHandle, bridge: BridgeHandle, tmp_path: Path
) -> Iterator[list[DeviceProcess]]:
    creds = bridge.provision("work-0", "work-1", "work-2")
    processes = [DeviceProcess(broker, c, tmp_path / c.device_id) for c in creds]
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()


def test_devices_sigkilled_mid_command_and_restarted(
    bridge: BridgeHandle, device_processes: list[DeviceProcess], tmp_path: Path
) -> None:
    """Three agents work through 40 commands each (50 ms of work apiece, nothing idempotent);
    each is SIGKILLed four times right after a handler started, and started again."""
    for process in device_processes:
        process.start()
    accepted = []
    for n in range(40):
        for process in device_processes:
            tag = f"{process.device_id}/{n}"
            future = bridge.bridge.send(process.device_id, "work", {"tag": tag, "ms": 50})
            accepted.append(future.result(10).record["id"])

    data_dir = bridge.bridge.settings.data_dir

    def busy(device_id: str) -> bool:
        return any(
            c["device_id"] == device_id and c["finished_at"] is None
            for c in store_reader.commands(data_dir).values()
        )

    for _round in range(4):
        for process in device_processes:
            seen = len(process.runs())
            # Wait for a new run to start (the handler marks it first thing), then kill the
            # device while the handler works. A device done with its queue is killed idle.

            def working(p: DeviceProcess = process, k: int = seen) -> bool:
                return len(p.runs()) > k or not busy(p.device_id)

            wait_until(working, 20, f"a handler running on {process.device_id}")
            process.kill()
            process.start()

    settle(data_dir, 20)
    stored = store_reader.commands(data_dir)
    tags: Counter[str] = Counter(t for p in device_processes for t in p.runs())
    runs, strays = runs_by_id(stored, tags, "tag")
    interrupted = [c for c in stored.values() if c["error"] == "interrupted"]
    outcome = ledger(
        "devices SIGKILLed mid-command (3 devices x 4 kills) and restarted",
        data_dir,
        runs,
        accepted=accepted,
        strays=strays,
        # A command cut off by a crash is reported `failed: interrupted`, never run again.
        allowed={
            i: {"failed"} if stored[i]["error"] == "interrupted" else {"succeeded"} for i in stored
        },
    ).note(f"{len(interrupted)} reported `interrupted`")
    check(outcome)
    assert interrupted, "no kill landed inside a handler: the test did not test anything"


def test_devices_flapping_every_few_hundred_ms(broker: BrokerHandle, bridge: BridgeHandle) -> None:
    """20 simulated devices each drop their connection about every 300 ms (the broker publishes
    their Last Will; they reconnect after 50-300 ms) while 400 commands go to them."""
    creds = bridge.provision(*(f"flap-{i:02d}" for i in range(20)))
    fleet = SimFleet(broker, creds, disconnect_every=0.3, reconnect_cap=0.3, latency=0.05).start()
    try:
        accepted = [
            bridge.bridge.send(creds[n % 20].device_id, "echo", {"n": n}).result(10).record["id"]
            for n in range(400)
        ]
        data_dir = bridge.bridge.settings.data_dir
        settle(data_dir, 20)
        outcome = ledger(
            "devices flapping (drop ~every 300 ms, 20 devices, 400 cmds)",
            data_dir,
            fleet.runs,
            accepted=accepted,
            strays=set(fleet.runs) - set(accepted),
        ).note(f"{fleet.simulator.stats.disconnects} disconnects")
    finally:
        fleet.stop()
    check(outcome)
    assert fleet.simulator.stats.disconnects >= 20


@pytest.fixture
def agents(broker: BrokerHandle, bridge: BridgeHandle, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(broker, bridge.provision("away-0", "away-1"), tmp_path)
    fleet.start()
    yield fleet
    fleet.stop()


def send_counts(
    bridge: BridgeHandle, device_id: str, ns: range, ttl: float | None = None
) -> list[str]:
    return [
        bridge.bridge.send(device_id, "count", {"n": n}, ttl=ttl).result(10).record["id"]
        for n in ns
    ]


def test_device_offline_longer_than_its_broker_session(
    broker: BrokerHandle, bridge: BridgeHandle, agents: Fleet
) -> None:
    """Commands queue in the broker session of two stopped agents; then the sessions end (a
    clean-start connection with expiry 0 under the device's own login discards them, exactly
    what the broker does when a session expires). The agents return to nothing queued: the
    store alone must get every command to them, each run once."""
    data_dir = bridge.bridge.settings.data_dir
    before = send_counts(bridge, "away-0", range(5)) + send_counts(bridge, "away-1", range(5, 10))
    settle(data_dir, 20)
    agents.stop()
    wait_until(lambda: not any(bridge.device(d)["online"] for d in ("away-0", "away-1")))
    away = send_counts(bridge, "away-0", range(10, 30)) + send_counts(
        bridge, "away-1", range(30, 50)
    )
    # Known offline: held in the store, not in the broker sessions (issue 13), so losing the
    # sessions below loses nothing even in principle; the store alone gets them there.
    assert all((bridge.state(i), bridge.command(i)["attempts"]) == ("queued", 0) for i in away)
    for device_id in ("away-0", "away-1"):
        creds = agents.creds[device_id]
        ender = ProbeClient(
            broker.host,
            broker.port,
            client_id=creds.username,
            username=creds.username,
            password=creds.password,
        ).connect_ok()  # clean start: the old session and its queue are dropped
        ender.disconnect()

    for device_id in ("away-0", "away-1"):
        agents.replace(device_id).start()
    settle(data_dir, 20)  # under the 30 s sweeper redelivery: only the store path counts
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, agents.runs, "n")
    outcome = ledger(
        "device offline longer than its broker session (queue gone)",
        data_dir,
        runs,
        accepted=before + away,
        strays=strays,
    ).note(f"{len(away)} cmds were held in the store while the sessions were lost")
    check(outcome)
    assert all(stored[i]["attempts"] == 1 for i in away)  # published once, from the store


@pytest.mark.parametrize("mqtt_version", ["5", "3.1.1"])
def test_device_offline_longer_than_the_command_ttl(
    broker: BrokerHandle, bridge: BridgeHandle, agents: Fleet, mqtt_version: str
) -> None:
    """Commands with a 1 s TTL wait for a device that is away longer: they end ``expired`` and
    never run, also after it returns; a command without a TTL, sent at the same time, runs once.
    """
    from devices.config import MqttVersion

    data_dir = bridge.bridge.settings.data_dir
    agents.stop()
    wait_until(lambda: not bridge.device("away-0")["online"], what="away-0 offline")
    short = send_counts(bridge, "away-0", range(10), ttl=1.0)
    fence = send_counts(bridge, "away-0", range(10, 12))
    settle(data_dir, 15, short)  # the sweeper ends them while the device is away
    agents.replace("away-0", mqtt_version=MqttVersion(mqtt_version)).start()
    settle(data_dir, 20, fence)
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, agents.runs, "n")
    allowed = {i: {"expired"} for i in short} | {i: {"succeeded"} for i in fence}
    outcome = ledger(
        f"device offline longer than the command TTL (MQTT {mqtt_version})",
        data_dir,
        runs,
        accepted=short + fence,
        strays=strays,
        allowed=allowed,
        only=short + fence,
    ).note("TTL'd cmds must end `expired` and never run")
    check(outcome)
    assert {json.loads(stored[i]["args"])["n"] for i in fence} == set(agents.runs)
