"""A real gateway (uvicorn on a free port, in a thread) over a real bridge, broker and store."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import httpx
import uvicorn

from broker_bridge.bridge import Bridge, BridgeSettings
from broker_bridge.service import BridgeService
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


@dataclass
class RunningGateway:
    server: uvicorn.Server
    thread: threading.Thread
    port: int

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
        """The bridge inside this gateway's command service (for tests that reach in)."""
        service = self.app_gateway.service
        assert isinstance(service, BridgeService)
        return service.bridge

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def start_gateway(bridge_settings: BridgeSettings, **overrides: object) -> RunningGateway:
    port = free_port()
    settings = GatewaySettings(port=port, **overrides)  # type: ignore[arg-type]
    service = BridgeService(Bridge(bridge_settings))
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
        raise RuntimeError("the gateway did not start")
    return RunningGateway(server, thread, port)
