"""The server side as the processes ``tether up`` runs: bridge workers and gateways sharing
one HTTP port, each its own ``tether`` process with its own log, killed and restarted one by
one by the tests."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.support.brokers import BrokerHandle
from tests.support.processes import ADMIN_TOKEN, tether_cli, wait_ready


class Cluster:
    def __init__(
        self,
        broker: BrokerHandle,
        data_dir: Path,
        http_port: int,
        *,
        workers: int,
        gateways: int,
        shards: int = 4,
        groups: int = 2,
    ) -> None:
        self.broker = broker
        self.data_dir = data_dir
        self.http_port = http_port
        self.shape = (workers, gateways)
        self.shards, self.groups = shards, groups
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def _argv(self, name: str) -> list[str]:
        if name.startswith("worker-"):
            index = int(name.split("-")[1])
            return tether_cli(
                "bridge",
                self.broker,
                self.data_dir,
                f"--shards={self.shards}",
                f"--groups={self.groups}",
                f"--worker-name={name}",
                f"--worker-index={index}",
                f"--workers={self.shape[0]}",
            )
        return tether_cli("gateway", self.broker, self.data_dir, f"--http-port={self.http_port}")

    def spawn(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self._argv(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TETHER_ADMIN_TOKEN": ADMIN_TOKEN},
            )

    def start(self, timeout: float = 30) -> None:
        workers, gateways = self.shape
        for index in range(workers):
            self.spawn(f"worker-{index}")
        for index in range(gateways):
            self.spawn(f"gateway-{index}")
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        wait_ready(self.url, self.procs, self.log_tails, timeout)

    def log_tails(self) -> str:
        return "\n".join(f"{name}:\n{self.log_tail(name)}" for name in self.procs)

    def owners(self) -> dict[int, str | None]:
        """Which worker owns each shard group, as a gateway sees it."""
        with self.api() as api:
            workers = api.get("/api/fleet").json()["workers"]
        return {w["group"]: (None if w.get("stale") else w["owner"]) for w in workers}

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text()[-chars:]

    def stop(self) -> None:
        for name in sorted(self.procs, key=lambda n: not n.startswith("gateway-")):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        self.procs.clear()
