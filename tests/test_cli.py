"""The ``tether`` command as a user runs it: a real subprocess, real signals, no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mosquitto.process import free_port
from tests.support.mqtt import ProbeClient

TETHER = [sys.executable, "-m", "tether_cli"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


def test_broker_subcommand_runs_and_stops_without_orphans(tmp_path: Path) -> None:
    port = free_port()
    with subprocess.Popen(
        [*TETHER, "broker", "--data-dir", str(tmp_path), "--mqtt-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"127.0.0.1:{port}" in banner, banner
        broker_pid = int(banner.split("(pid ")[1].split(")")[0])
        assert pid_alive(broker_pid)
        # The broker refuses strangers and knows the bridge's generated credentials.
        assert ProbeClient("127.0.0.1", port).connect().is_failure
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not pid_alive(broker_pid)


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [*TETHER, "broker", "--data-dir", str(tmp_path), "--mqtt-port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 2
    assert "already in use" in result.stderr


@pytest.mark.parametrize("command", ["broker", "broker-config"])
def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path, command: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run(
        [*TETHER, command, "--data-dir", str(blocker / "data")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "not writable" in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_fall_back_to_environment(tmp_path: Path) -> None:
    result = subprocess.run(
        [*TETHER, "broker-config"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "TETHER_DATA_DIR": str(tmp_path), "TETHER_MQTT_PORT": "4567"},
    )
    conf = tmp_path / "mosquitto" / "mosquitto.conf"
    assert result.stdout.strip() == str(conf)
    assert "listener 4567 127.0.0.1" in conf.read_text()
