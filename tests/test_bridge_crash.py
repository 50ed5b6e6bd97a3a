"""Crashes mid-burst, with real processes and signals: nothing lost, nothing run twice.

Every command the bridge accepted must end terminal (here: ``succeeded``), each must run exactly
once on its device, and no command's recorded states may move backwards.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker_bridge.bridge import Bridge
from tests.support import store_reader
from tests.support.bridges import BridgeHandle, bridge_settings
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.chaos import Fleet, account, bridge_cli, wait_all_terminal
from tests.support.processes import pump_lines

pytestmark = pytest.mark.broker

DEVICES = [f"dev-{i:02d}" for i in range(10)]


@pytest.fixture
def provisioned(broker: BrokerHandle, tmp_path: Path) -> list[Credentials]:
    setup = Bridge(bridge_settings(broker, tmp_path / "store"))
    setup.start()
    try:
        return BridgeHandle(setup).provision(*DEVICES)
    finally:
        setup.stop()


@pytest.fixture
def fleet(broker: BrokerHandle, provisioned: list[Credentials], tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(broker, provisioned, tmp_path)
    running.start()
    yield running
    running.stop()


def test_bridge_killed_mid_burst_loses_nothing(
    broker: BrokerHandle, fleet: Fleet, tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    spec = {
        "data_dir": str(data_dir),
        "host": broker.host,
        "port": broker.port,
        "username": broker.admin_username,
        "password": broker.admin_password,
        "devices": DEVICES,
        "count": 500,
    }
    accepted: dict[str, int] = {}
    with subprocess.Popen(
        [sys.executable, "-m", "tests.support.burst_driver", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    ) as driver:
        assert driver.stdout is not None
        out = driver.stdout
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=pump_lines, args=(out, lines), daemon=True).start()
        try:
            while len(accepted) < 200:
                word, command_id, n = lines.get(timeout=30).split()
                assert word == "accepted"
                accepted[command_id] = int(n)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait(10)
    assert driver.returncode == -signal.SIGKILL

    log = (tmp_path / "bridge.log").open("w")
    restarted = subprocess.Popen(
        bridge_cli(broker, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()  # the child holds its own copy
    try:
        wait_all_terminal(data_dir, 60)
        account(data_dir, fleet, accepted)
        assert len(store_reader.commands(data_dir)) >= 200
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(15) == 0


def test_broker_killed_mid_burst_loses_nothing(
    broker: BrokerHandle, fleet: Fleet, tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    bridge = Bridge(bridge_settings(broker, data_dir))
    bridge.start()
    try:
        accepted: dict[str, int] = {}
        for n in range(500):
            if n == 250:
                broker.kill()  # SIGKILL: whatever Mosquitto had not autosaved is gone
                broker.start()
            record = bridge.send(DEVICES[n % len(DEVICES)], "count", {"n": n}).result(10).record
            accepted[record["id"]] = n
        wait_all_terminal(data_dir, 90)
        account(data_dir, fleet, accepted)
        assert len(store_reader.commands(data_dir)) == 500
    finally:
        bridge.stop()
