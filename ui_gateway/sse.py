"""``GET /api/events``: the event stream as Server-Sent Events, resumable by ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from tether.protocol.service import Positioned, Reset
from ui_gateway.auth import Role
from ui_gateway.context import gateway_of


async def events_endpoint(request: Request) -> Response:
    gateway = gateway_of(request)
    gateway.authenticate(request, Role.VIEWER, allow_query=True)
    text = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    cursor = gateway.service.decode_cursor(text) if text else None
    if cursor is None:
        # "From now" is the moment of connecting, fixed before the response starts: a client
        # that acts once the stream is open must see the events of what it does (as on /ws).
        cursor = await gateway.service.current_cursor()
    service, settings = gateway.service, gateway.settings

    async def frames() -> AsyncIterator[str]:
        yield f"retry: 2000\n: tether events, keep-alive every {settings.sse_keepalive:g} s\n\n"
        stream = service.events(
            cursor, live_buffer=settings.client_queue, page=settings.replay_page
        )
        pending: asyncio.Task[Positioned | Reset] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(stream))
                done, _ = await asyncio.wait({pending}, timeout=settings.sse_keepalive)
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                finally:
                    pending = None
                if isinstance(item, Reset):
                    yield f'event: reset\ndata: {{"reason": "{item.reason}"}}\n\n'
                    return
                event = item.event
                yield f"id: {item.cursor}\nevent: {event.kind}\ndata: {event.data_json}\n\n"
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            await stream.aclose()

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
