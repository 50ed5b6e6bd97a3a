"""Gateways share the HTTP port through one listening socket each (``SO_REUSEPORT``); the
connections accepted on it must have TCP_NODELAY, or Nagle holds small WebSocket frames until
the client's next packet acknowledges the last one (it cost 7 ms of the p50 at 100 commands/s)."""

from __future__ import annotations

import asyncio
import socket

from mosquitto.process import free_port
from ui_gateway.server import shared_socket


def test_accepted_connections_have_tcp_nodelay() -> None:
    async def accept_one() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = shared_socket("127.0.0.1", free_port())
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        host, port = listening.getsockname()
        _reader, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accept_one()) != 0


def test_two_sockets_share_one_port() -> None:
    port = free_port()
    first, second = shared_socket("127.0.0.1", port), shared_socket("127.0.0.1", port)
    try:
        assert first.getsockname() == second.getsockname()
    finally:
        first.close()
        second.close()
