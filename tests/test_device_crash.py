"""Kill the agent process between ``received`` and the final ack, start it again.

The agent runs as ``tether device`` in a real subprocess with handlers from
``tests.support.device_handlers``; every handler run appends a line to a marker file, so the
test counts real runs across the crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.brokers import BrokerHandle, Credentials
from tests.support.devices import Watcher, command
from tests.support.waiting import wait_until
from tether.protocol import AckStatus

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]


class AgentProcess:
    """``tether device`` for one device, journal and marker file fixed across restarts."""

    def __init__(self, broker: BrokerHandle, creds: Credentials, tmp_path: Path) -> None:
        self.argv = [
            sys.executable, "-m", "tether_cli", "device",
            "--id", creds.device_id,
            "--broker", f"{broker.host}:{broker.port}",
            "--journal", str(tmp_path / "journal.sqlite3"),
            "--handlers", "tests.support.device_handlers:install",
            "--no-demo",
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "TETHER_DEVICE_PASSWORD": creds.password,
            "TETHER_TEST_MARKER": str(tmp_path / "runs.txt"),
        }
        self.marker = tmp_path / "runs.txt"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        self.proc = None

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(15)
        finally:
            assert self.proc.stderr is not None
            self.stderr = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()
            self.proc = None
        return code

    def runs(self) -> list[str]:
        return self.marker.read_text().splitlines() if self.marker.exists() else []


@pytest.fixture
def device(broker: BrokerHandle, tmp_path: Path) -> Iterator[tuple[AgentProcess, Watcher]]:
    (creds,) = broker.provision("dev-a")
    watcher = Watcher(broker, "dev-a")
    agent = AgentProcess(broker, creds, tmp_path)
    try:
        yield agent, watcher
    finally:
        if agent.proc is not None:
            agent.kill()
        watcher.close()


def crash_mid_command(agent: AgentProcess, watcher: Watcher, name: str, tag: str) -> str:
    """Start the agent, send ``name``, wait until its handler runs, SIGKILL the agent."""
    agent.start()
    watcher.wait_online(True)
    cmd = command(name, {"tag": tag})
    watcher.send(cmd)
    watcher.wait(lambda w: any(a.status is AckStatus.RECEIVED for a in w.acks_for(cmd.id)))
    wait_until(lambda: f"{name} {tag}" in agent.runs(), what="the handler to start")
    agent.kill()
    watcher.wait_online(False)  # the broker published the Last Will: the process is gone
    assert watcher.finals(cmd.id) == []
    return cmd.id


def test_a_command_interrupted_by_a_crash_is_reported_interrupted_not_run_again(
    device: tuple[AgentProcess, Watcher],
) -> None:
    agent, watcher = device
    command_id = crash_mid_command(agent, watcher, "block", "x")
    agent.start()
    final = watcher.final(command_id, timeout=20)
    assert (final.status, final.error) == (AckStatus.FAILED, "interrupted")
    fence = command("count")  # answered after recovery: everything before it is settled
    watcher.send(fence)
    assert watcher.final(fence.id).result == {"lines": ["block x"]}
    assert agent.stop() == 0, agent.stderr
    assert agent.runs() == ["block x"]  # ran once, before the crash, never again
    statuses = [a.status for a in watcher.acks_for(command_id)]
    assert statuses == [AckStatus.RECEIVED, AckStatus.FAILED]


def test_an_idempotent_command_interrupted_by_a_crash_runs_again(
    device: tuple[AgentProcess, Watcher],
) -> None:
    agent, watcher = device
    command_id = crash_mid_command(agent, watcher, "block_idempotent", "y")
    agent.start()
    final = watcher.final(command_id, timeout=20)
    assert (final.status, final.result) == (AckStatus.SUCCEEDED, {"runs": 2})
    assert agent.stop() == 0, agent.stderr
    assert agent.runs() == ["block_idempotent y", "block_idempotent y"]


def test_device_cli_refuses_bad_flags_clearly(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "tether_cli", "device", "--broker", "127.0.0.1:1"]
    cases = [
        ([], "--id"),
        (["--id", "bad/id"], "device id"),
        (["--id", "dev-a", "--handlers", "nocolon"], "module:attr"),
        (["--id", "dev-a", "--keepalive", "60"], "keepalive"),
        (["--id", "dev-a", "--no-demo"], "no commands"),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    for extra, expected in cases:
        result = subprocess.run(
            [*base, *extra, "--journal", str(tmp_path / "j.sqlite3")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2, (extra, result.stderr)
        assert expected in result.stderr, (extra, result.stderr)
        assert "Traceback" not in result.stderr
