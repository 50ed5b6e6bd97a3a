"""What every request handler reaches through ``request.app.state.gateway``."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from broker_bridge.bridge import Bridge
from ui_gateway.auth import Principal, Role, TokenTable, bearer_token
from ui_gateway.hub import EventHub
from ui_gateway.settings import GatewaySettings


@dataclass
class Gateway:
    bridge: Bridge
    tokens: TokenTable
    settings: GatewaySettings
    hub: EventHub | None = None
    ready: bool = False
    counters: dict[str, int] = field(default_factory=dict)

    def authenticate(
        self, conn: HTTPConnection, role: Role, allow_query: bool = False
    ) -> Principal:
        token = bearer_token(conn.headers, conn.query_params, allow_query)
        principal = self.tokens.lookup(token)
        principal.require(role)
        return principal

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n


def gateway_of(conn: HTTPConnection) -> Gateway:
    gateway: Gateway = conn.app.state.gateway
    return gateway
