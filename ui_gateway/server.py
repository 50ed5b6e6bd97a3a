"""Serve the gateway with uvicorn: the command service starts and stops with the app."""

from __future__ import annotations

import uvicorn

from tether.protocol.service import CommandService
from ui_gateway.app import create_app
from ui_gateway.auth import TokenTable
from ui_gateway.settings import GatewaySettings


def uvicorn_config(
    service: CommandService,
    tokens: TokenTable,
    settings: GatewaySettings,
    log_level: str = "info",
) -> uvicorn.Config:
    app = create_app(service, tokens, settings)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_frame,
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=2 * settings.ws_ping_interval,  # closed after two missed pings
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
