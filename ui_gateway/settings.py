"""The gateway's one settings object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tether.settings import setting

STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = setting("127.0.0.1", flag="--http-host", help="address of the dashboard and API")
    port: int = setting(8080, flag="--http-port", help="port of the dashboard and API")
    max_body: int = 1024 * 1024  # bytes of a REST request body
    ws_max_frame: int = 1024 * 1024  # bytes of one WebSocket frame (larger: closed with 1009)
    ws_ping_interval: float = 25.0  # server ping frames; no pong within two intervals: closed
    client_queue: int = 1000  # messages waiting for one client before it is cut off
    max_inflight_sends: int = 256  # concurrent sends per WebSocket connection
    sse_keepalive: float = 15.0  # seconds between SSE comment lines
    replay_page: int = 1000
    history_limit: int = 200  # the largest ?limit= on command history
    static_dir: Path = STATIC_DIR
