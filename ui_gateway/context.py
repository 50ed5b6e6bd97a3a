"""What every request handler reaches through ``request.app.state.gateway``."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from tether.protocol.service import CommandService
from ui_gateway.auth import Principal, Role, TokenTable, bearer_token
from ui_gateway.settings import GatewaySettings


@dataclass
class Gateway:
    service: CommandService
    tokens: TokenTable
    settings: GatewaySettings
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
