"""Chaos: the broker and the bridge die with SIGKILL under load, and come back.

Builds on ``test_bridge_crash.py`` (500 commands, 10 in-process agents with SQLite journals) at
the issue's scale: 1,000 commands to 100 devices of the real simulator (``devices.simulator``,
counting each command id its handlers run), plus the narrowest window of all: the bridge killed
after an ack reached it and before that ack was committed.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future
from functools import partial
from pathlib import Path

import pytest

from broker_bridge.bridge import Bridge
from broker_bridge.store.jobs import Accepted
from tests.support import store_reader
from tests.support.bridges import BridgeHandle, bridge_settings
from tests.support.brokers import BrokerHandle, Credentials, DockerBroker, LocalBroker
from tests.support.chaos import (
    Fleet,
    Lines,
    SimFleet,
    bridge_cli,
    check,
    ledger,
    runs_by_id,
    settle,
    stop_process,
)
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

DEVICES = [f"sim-{i:03d}" for i in range(100)]
BURST = 1000


def provision(broker: BrokerHandle, data_dir: Path, ids: list[str]) -> list[Credentials]:
    setup = Bridge(bridge_settings(broker, data_dir))
    setup.start()
    try:
        return BridgeHandle(setup).provision(*ids)
    finally:
        setup.stop()


# Deadlines stay under the bridge's 30 s sweeper redelivery, the slow second line of defense:
# these tests check the fast paths (republish at start, on reconnect, on a device's return).
SETTLE = 20


@pytest.fixture
def sim_fleet(broker: BrokerHandle, tmp_path: Path) -> Iterator[SimFleet]:
    # 50 ms handlers: each device has a backlog queued in the broker when a fault strikes.
    fleet = SimFleet(broker, provision(broker, tmp_path / "store", DEVICES), latency=0.05)
    fleet.start()
    yield fleet
    fleet.stop()


def published(handle: BridgeHandle, ids: list[str]) -> bool:
    return "queued" not in {handle.state(i) for i in ids}


@pytest.fixture
def forgetful_broker(tmp_path: Path, use_docker: bool) -> Iterator[BrokerHandle]:
    """The project's broker config, autosaving only at a clean stop: a SIGKILL loses every
    session and queue it holds (the worst case of the default 5 s autosave, every time)."""
    data_dir = tmp_path / "mosquitto"
    if use_docker:
        docker = DockerBroker(data_dir, autosave_interval=3600)
        docker.start()
        try:
            yield BrokerHandle(docker)
        finally:
            docker.remove()
    else:
        local = LocalBroker(data_dir, autosave_interval=3600)
        local.start()
        try:
            yield BrokerHandle(local)
        finally:
            local.stop()


def test_broker_sigkill_mid_burst_to_100_devices(
    forgetful_broker: BrokerHandle, tmp_path: Path
) -> None:
    """1,000 commands go to 100 simulated devices: 50 online and busy (50 ms handlers), 50 away,
    their commands queued in their broker sessions. Halfway, once the broker holds the first 500,
    it is SIGKILLed and started again, empty; the away half comes back after. The store must get
    every command to its device, each run once."""
    broker = forgetful_broker
    data_dir = tmp_path / "store"
    creds = provision(broker, data_dir, DEVICES)
    online = SimFleet(broker, creds[:50], latency=0.05).start()
    SimFleet(broker, creds[50:]).start().stop()  # sessions made, then away: queued for later
    back: SimFleet | None = None
    bridge = Bridge(bridge_settings(broker, data_dir))
    bridge.start()
    try:
        handle = BridgeHandle(bridge)
        wait_until(lambda: not any(handle.device(c.device_id)["online"] for c in creds[50:]))
        accepted: list[Future[Accepted]] = []
        for n in range(BURST):
            if n == BURST // 2:
                # Mid-burst, once the broker holds the first half (PUBACKed: `sent`), 250 of
                # them in the away half's sessions. SIGKILL: those queues die with it.
                first = [f.result(30).record["id"] for f in accepted]
                wait_until(partial(published, handle, first), 20, "the first half PUBACKed")
                broker.kill()
                broker.start()
            accepted.append(bridge.send(DEVICES[n % len(DEVICES)], "echo", {"n": n}))
        ids = [f.result(30).record["id"] for f in accepted]
        back = SimFleet(broker, creds[50:], latency=0.05).start()
        settle(data_dir, SETTLE)
        runs = online.runs + back.runs
        outcome = ledger(
            f"broker SIGKILL mid-burst ({BURST} cmds → {len(DEVICES)} sim devices, half away),"
            " restarted empty",
            data_dir,
            runs,
            accepted=ids,
            strays=set(runs) - set(ids),
        ).note("the away half's queued commands died with the broker")
        assert bridge.session.connected.is_set()  # the bridge came back by itself
    finally:
        bridge.stop()
        online.stop()
        if back is not None:
            back.stop()
    check(outcome)
    assert outcome.commands == BURST


def test_bridge_sigkill_mid_burst_to_100_devices(
    broker: BrokerHandle, sim_fleet: SimFleet, tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    spec = {
        "data_dir": str(data_dir),
        "host": broker.host,
        "port": broker.port,
        "username": broker.admin_username,
        "password": broker.admin_password,
        "devices": DEVICES,
        "count": BURST,
        "name": "echo",
    }
    accepted: list[str] = []
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.support.chaos", "burst", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(driver.stdout)
        while len(accepted) < 400:
            word, command_id, _ = lines.next(30).split()
            assert word == "accepted"
            accepted.append(command_id)
    finally:
        assert stop_process(driver, signal.SIGKILL) == -signal.SIGKILL
    restarted = subprocess.Popen(
        bridge_cli(broker, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        settle(data_dir, SETTLE)
        outcome = ledger(
            f"bridge SIGKILL mid-burst ({BURST} cmds → {len(DEVICES)} sim devices), restarted",
            data_dir,
            sim_fleet.runs,
            accepted=accepted,
            strays=set(sim_fleet.runs) - set(store_reader.commands(data_dir)),
        ).note(f"killed after {len(accepted)} acceptances were reported")
    finally:
        assert stop_process(restarted) == 0
    check(outcome)
    assert outcome.commands >= 400


AGENTS = [f"dev-{i}" for i in range(4)]


@pytest.fixture
def agents(broker: BrokerHandle, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(broker, provision(broker, tmp_path / "store", AGENTS), tmp_path)
    fleet.start()
    yield fleet
    fleet.stop()


def test_bridge_sigkill_between_ack_arrival_and_commit(
    broker: BrokerHandle, agents: Fleet, tmp_path: Path
) -> None:
    """The bridge PUBACKs an ack only after committing it, so the broker still holds every ack
    that reached a bridge killed before its commit, and hands it to the next bridge.

    The devices are away while the 40 commands are published (all end ``sent``, queued in their
    sessions); they come back, run them and ack; from the first ack on, no shard of the bridge
    can commit, and once every final ack has arrived the bridge is SIGKILLed. Both
    bridges redeliver only after an hour, so nothing but those acks can finish the commands:
    a bridge that PUBACKed on arrival would leave them ``sent``."""
    data_dir = tmp_path / "store"
    agents.stop()
    spec = {
        "data_dir": str(data_dir),
        "host": broker.host,
        "port": broker.port,
        "username": broker.admin_username,
        "password": broker.admin_password,
        "devices": AGENTS,
        "count": 40,
        "redelivery_after": 3600,
    }
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.support.chaos", "ack-gate", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    accepted: dict[str, int] = {}
    closed: set[str] = set()
    finals: set[str] = set()
    try:
        lines = Lines(driver.stdout)
        while len(accepted) < 40:
            word, command_id, n = lines.next(30).split()
            assert word == "accepted"
            accepted[command_id] = int(n)
        wait_until(
            lambda: {c["state"] for c in store_reader.commands(data_dir).values()} == {"sent"},
            20,
            "all 40 published and PUBACKed",
        )
        for device_id in AGENTS:
            agents.replace(device_id).start()

        def settled() -> bool:  # every shard refusing commits, and every final ack in
            return len(closed) == 4 and set(accepted) <= finals

        for _ in range(10_000):
            if settled():
                break
            try:
                word, *rest = lines.next(30).split()
            except queue.Empty:
                pytest.fail(f"the driver went quiet: {len(finals)} of 40 final acks in")
            if word == "gate-closed":
                closed.add(rest[0])
            elif word == "ack-arrived" and rest[1] != "received":
                finals.add(rest[0])
        assert settled()
    finally:
        assert stop_process(driver, signal.SIGKILL) == -signal.SIGKILL

    # Killed between arrival and commit: every final ack arrived, not one was stored.
    at_kill = store_reader.commands(data_dir)
    assert {at_kill[i]["state"] for i in accepted} == {"sent"}
    assert sum(agents.runs.values()) == 40  # the devices ran them all, once

    restarted = subprocess.Popen(
        bridge_cli(broker, tmp_path, "--redelivery-after", "3600"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        settle(data_dir, SETTLE, accepted)
        stored = store_reader.commands(data_dir)
        runs, strays = runs_by_id(stored, agents.runs, "n")
        outcome = ledger(
            "bridge SIGKILL between an ack's arrival and its commit, restarted",
            data_dir,
            runs,
            accepted=accepted,
            strays=strays,
        ).note(f"all {len(finals)} final acks had reached the killed bridge, none committed")
    finally:
        assert stop_process(restarted) == 0
    check(outcome)
