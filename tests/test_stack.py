"""``tether up`` as a newcomer runs it: a real subprocess tree, real signals, a real restart."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mosquitto.process import free_port
from tests.support.processes import pump_lines
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker


def processes_using(marker: str) -> list[int]:
    """Pids (not zombies) whose command line mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


class Up:
    def __init__(
        self, data_dir: Path, mqtt_port: int, http_port: int, simulate: int, *extra: str
    ) -> None:
        self.url = f"http://127.0.0.1:{http_port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether_cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--mqtt-port",
                str(mqtt_port),
                "--http-port",
                str(http_port),
                "--simulate",
                str(simulate),
                "--shards",
                "4",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "TETHER_ADMIN_TOKEN"},
        )
        out = self.proc.stdout
        assert out is not None
        threading.Thread(target=pump_lines, args=(out, self.lines), daemon=True).start()
        self.output: list[str] = []

    def wait_for(self, text: str, timeout: float = 90) -> str:
        while True:
            line = self.lines.get(timeout=timeout)
            self.output.append(line)
            if text in line:
                return line

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def send(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether_cli", "send", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TETHER_URL": url, "TETHER_TOKEN": token},
    )


def test_up_runs_the_stack_and_restarts_where_it_was(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    mqtt_port, http_port = free_port(), free_port()
    up = Up(data_dir, mqtt_port, http_port, simulate=20)
    try:
        up.wait_for("Tether is up.")
        dashboard = up.wait_for("dashboard")
        token = dashboard.split("#token=")[1].strip()
        result = send(up.url, token, "sim-00001", "echo", "--args", '{"hello": 1}', "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "succeeded" in result.stdout and '"hello": 1' in result.stdout
        failing = send(up.url, token, "sim-00002", "fail", "--wait")
        assert failing.returncode == 1 and "failed" in failing.stdout
    finally:
        assert up.stop() == 0
    assert processes_using(str(data_dir)) == [], "tether up left processes behind"

    again = Up(data_dir, mqtt_port, http_port, simulate=20)
    try:
        again.wait_for("Tether is up.")
        headers = {"Authorization": f"Bearer {token}"}  # the same token: kept in the data dir
        with httpx.Client(base_url=again.url, headers=headers, timeout=10) as client:
            history = client.get("/api/devices/sim-00001/commands").json()["commands"]
            assert [c["state"] for c in history] == ["succeeded"]
            assert client.get("/api/fleet").json()["devices"] == {
                "total": 20,
                "online": 20,
                "offline": 0,
            }
        assert send(again.url, token, "sim-00020", "echo", "--wait").returncode == 0
    finally:
        assert again.stop() == 0
    assert processes_using(str(data_dir)) == []


def test_up_starts_a_killed_worker_again_and_serves_within_5_s(tmp_path: Path) -> None:
    """One worker owns both shard groups; SIGKILLed, nobody owns them until the supervisor
    has started it again, which takes over the groups (their leases died with it)."""
    data_dir = tmp_path / "stack"
    up = Up(data_dir, free_port(), free_port(), 3, "--workers", "1", "--gateways", "1")
    try:
        up.wait_for("Tether is up.")
        token = up.wait_for("dashboard").split("#token=")[1].strip()
        (worker,) = [
            pid for pid in processes_using(str(data_dir)) if _cmdline(pid).count(" bridge ")
        ]
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        up.wait_for("worker-0 exited (-9); starting it again", 10)
        with httpx.Client(base_url=up.url, timeout=2) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
        ready_after = time.monotonic() - killed
        print(f"[stack] killed worker restarted; ready again after {ready_after:.2f} s")
        assert ready_after <= 5.0, f"groups owned again only after {ready_after:.1f} s"
        result = send(up.url, token, "sim-00001", "echo", "--wait")
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        assert up.stop() == 0
    assert processes_using(str(data_dir)) == []


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_up_explains_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tether_cli",
                "up",
                "--data-dir",
                str(tmp_path / "s"),
                "--mqtt-port",
                str(taken),
                "--http-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"port {taken}" in result.stderr and "already in use" in result.stderr
    assert processes_using(str(tmp_path / "s")) == []
