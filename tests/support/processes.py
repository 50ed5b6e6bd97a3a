"""Gateway processes for tests that restart or kill the server under a client."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from tests.support.brokers import BrokerHandle
from tests.support.waiting import wait_until

ADMIN_TOKEN = "admin-token-for-process-tests"


def tether_cli(command: str, broker: BrokerHandle, data_dir: Path, *extra: str) -> list[str]:
    """``tether <command>`` (``bridge`` or ``gateway``) over ``data_dir``, logged in to the
    test's broker as the bridge."""
    return [
        sys.executable, "-m", "tether_cli", command,
        f"--data-dir={data_dir}",
        f"--mqtt-port={broker.port}",
        f"--mqtt-username={broker.admin_username}",
        f"--mqtt-password={broker.admin_password}",  # "=": a secret may start with "-"
        *extra,
    ]  # fmt: skip


def pump_lines(out: IO[str], lines: queue.Queue[str]) -> None:
    """Copy a child's output lines to a queue until it closes (or the test closes it)."""
    with contextlib.suppress(ValueError, OSError):
        for line in out:
            lines.put(line)


class GatewayProcess:
    """The server side as separate processes: ``tether bridge`` (a worker owning every shard
    group) and ``tether gateway``, logged to one file. ``stop(sig)`` signals both (gateway
    first); ``kill_gateway``/``kill_worker`` one of them."""

    def __init__(self, broker: BrokerHandle, data_dir: Path, http_port: int, log: Path) -> None:
        self.broker = broker
        self.data_dir = data_dir
        self.http_port = http_port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None  # the gateway
        self.worker: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def worker_argv(self) -> list[str]:
        return tether_cli("bridge", self.broker, self.data_dir, "--shards=4")

    def gateway_argv(self) -> list[str]:
        return tether_cli("gateway", self.broker, self.data_dir, f"--http-port={self.http_port}")

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TETHER_ADMIN_TOKEN": ADMIN_TOKEN},
            )

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:]

    def start(self, timeout: float = 30) -> None:
        if self.worker is None or self.worker.poll() is not None:
            self.worker = self._spawn(self.worker_argv())
        self.start_gateway(timeout)

    def start_gateway(self, timeout: float = 30) -> None:
        self.proc = self._spawn(self.gateway_argv())
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        wait_ready(self.url, {"gateway": self.proc, "worker": self.worker}, self.log_tail, timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def worker_pid(self) -> int:
        assert self.worker is not None
        return self.worker.pid

    def kill_gateway(self) -> None:
        stop_process(self.proc, signal.SIGKILL)
        self.proc = None

    def kill_worker(self) -> None:
        stop_process(self.worker, signal.SIGKILL)
        self.worker = None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None
        stop_process(self.worker, sig)
        self.worker = None

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )


def stop_process(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> int | None:
    """Signal a child we started and reap it (SIGKILL if it does not exit in time); close its
    piped output, so whoever reads it gets EOF."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


def wait_ready(
    url: str,
    children: Mapping[str, subprocess.Popen[Any] | None],
    log_tail: Callable[[], str],
    timeout: float = 30,
) -> None:
    """Until ``url``'s ``/readyz`` answers 200; fail at once if one of ``children`` exits."""
    with httpx.Client(base_url=url, timeout=2) as client:

        def ready() -> bool:
            for name, proc in children.items():
                assert proc is not None and proc.poll() is None, f"{name} exited:\n{log_tail()}"
            try:
                return client.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, f"{url} ready")
