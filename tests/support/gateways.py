"""A real gateway (uvicorn on a free port, in a thread) over a real worker, broker and store.

The two sides run in this process, but talk as separate processes do: the gateway's
:class:`RemoteService` sends requests to the worker over the broker and reads the shards."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import httpx
import uvicorn

from broker_bridge.bridge import Bridge, BridgeSettings
from broker_bridge.remote import RemoteService, RemoteSettings
from broker_bridge.worker import Worker, WorkerSettings
from mosquitto.process import free_port
from ui_gateway.auth import Role, TokenTable
from ui_gateway.server import uvicorn_config
from ui_gateway.settings import GatewaySettings

TOKENS = {
    Role.VIEWER: "viewer-token-0123456789",
    Role.OPERATOR: "operator-token-0123456789",
    Role.ADMIN: "admin-token-0123456789abc",
}


def token_table() -> TokenTable:
    table = TokenTable()
    for role, token in TOKENS.items():
        table.add(token, role.name.lower(), role)
    return table


class InProcessWorker:
    """A :class:`Worker` on a thread; ``start`` returns once it owns every group."""

    def __init__(self, settings: BridgeSettings) -> None:
        self.worker = Worker(WorkerSettings(settings, name="test-worker"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.worker.run, args=(self._stop,), daemon=True)

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        with self.worker.changed:
            owns_all = self.worker.changed.wait_for(
                lambda: len(self.worker.owners) == self.worker.groups, timeout
            )
        if not owns_all:
            self.stop()
            raise RuntimeError("the worker did not take its groups")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass
class RunningGateway:
    server: uvicorn.Server
    thread: threading.Thread
    port: int
    worker: InProcessWorker | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def client(self, role: Role | None = Role.ADMIN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    @property
    def app_gateway(self):  # type: ignore[no-untyped-def]
        return self.server.config.loaded_app.app.state.gateway  # type: ignore[union-attr]

    @property
    def bridge(self) -> Bridge:
        """The worker's bridge (the owner of group 0; tests' stores have one group)."""
        assert self.worker is not None
        return self.worker.worker.owners[0]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        if self.worker is not None:
            self.worker.stop()


def start_gateway(bridge_settings: BridgeSettings, **overrides: object) -> RunningGateway:
    port = free_port()
    settings = GatewaySettings(port=port, **overrides)  # type: ignore[arg-type]
    worker = InProcessWorker(bridge_settings)
    worker.start()
    service = RemoteService(
        RemoteSettings(bridge_settings.data_dir, bridge_settings.mqtt, bridge_settings.prefix)
    )
    config = uvicorn_config(service, token_table(), settings, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = threading.Event()
    for _ in range(1000):
        if server.started or not thread.is_alive():
            break
        deadline.wait(0.01)  # poll until uvicorn reports it is serving
    if not server.started:
        server.should_exit = True
        worker.stop()
        raise RuntimeError("the gateway did not start")
    return RunningGateway(server, thread, port, worker)
