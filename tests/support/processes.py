"""Gateway processes for tests that restart or kill the server under a client."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.support.brokers import BrokerHandle

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
    def __init__(self, broker: BrokerHandle, data_dir: Path, http_port: int, log: Path) -> None:
        self.broker = broker
        self.data_dir = data_dir
        self.http_port = http_port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                tether_cli(
                    "gateway",
                    self.broker,
                    self.data_dir,
                    f"--http-port={self.http_port}",
                    "--shards=4",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TETHER_ADMIN_TOKEN": ADMIN_TOKEN},
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while True:
                assert self.proc.poll() is None, self.log.read_text()[-2000:]
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not get ready"
                time.sleep(0.05)  # polling a child process's readiness

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.proc = None

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )
