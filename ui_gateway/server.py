"""Serve the gateway with uvicorn: the command service starts and stops with the app."""

from __future__ import annotations

import socket

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


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket several gateway processes can each bind (``SO_REUSEPORT``): the
    kernel spreads new connections among them, and a gateway that dies leaves the others
    serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # accepted ones inherit it; without it Nagle held small WebSocket frames for the next ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
