"""``GET /ws``: send, cancel, ping/pong and live events over one WebSocket.

Three tasks per connection: the reader handles client frames (each send in its own task, so a
burst is not serialised on commit latency), the streamer turns stored events into frames, and
the writer drains the bounded outbox. A client that lets the outbox fill is cut off with close
code 1013; it resumes from its last cursor. The ``accepted`` (or ``error``) reply of a send or
cancel is written before any event of its command: the connection makes the command id itself,
and :mod:`ui_gateway.ordering` holds that command's events back until the reply is out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from tether.protocol import new_command_id, validate_device_id
from tether.protocol.cursor import Cursor
from tether.protocol.payloads import loads_strict
from tether.protocol.service import Positioned, Reset, command_id_of
from ui_gateway.auth import Principal, Role
from ui_gateway.context import Gateway, gateway_of
from ui_gateway.errors import BadRequest, TetherError, TooSlow, error_frame, error_response
from ui_gateway.ordering import AcceptedFirst
from ui_gateway.requests import parse_send

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW = 1013


class ClientTooSlow(TooSlow):
    pass


def encode_event_message(item: Positioned) -> str:
    """The WebSocket frame; the stored JSON of the data is spliced in, not re-encoded."""
    event = item.event
    return f'{{"type":"event","id":"{item.cursor}","kind":"{event.kind}","data":{event.data_json}}}'


class Connection:
    def __init__(self, websocket: WebSocket, gateway: Gateway, principal: Principal) -> None:
        self.websocket = websocket
        self.gateway = gateway
        self.principal = principal
        self.outbox: asyncio.Queue[str] = asyncio.Queue(gateway.settings.client_queue)
        self.sends = asyncio.Semaphore(gateway.settings.max_inflight_sends)
        self.tasks: set[asyncio.Task[None]] = set()
        self.order = AcceptedFirst()
        self.overflowed = asyncio.Event()  # set by any task that found the outbox full

    def post(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message, separators=(",", ":"))
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed.set()
            raise ClientTooSlow from None

    def post_event(self, text: str, command_id: str | None = None) -> None:
        for frame in self.order.event(text, command_id):
            self.post(frame)
        if self.order.held > self.gateway.settings.client_queue:
            self.overflowed.set()
            raise ClientTooSlow

    @contextlib.contextmanager
    def replying(self, command_id: str) -> Iterator[None]:
        """Around a send or cancel of ``command_id``: its events wait until its reply is in the
        outbox."""
        self.order.begin(command_id)
        try:
            yield
        finally:
            for frame in self.order.end(command_id):
                self.post(frame)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so asyncio does not report it unread
        if error is not None and not isinstance(error, ClientTooSlow):  # watch_overflow acts
            log.error("a send or cancel task failed", exc_info=error)

    async def watch_overflow(self) -> None:
        """A send task that overflows the outbox cannot end the connection itself: this does."""
        await self.overflowed.wait()
        raise ClientTooSlow

    def post_error(self, ref: Any, error: BaseException) -> None:
        self.post(error_frame(ref, error))

    async def writer(self) -> None:
        while True:
            await self.websocket.send_text(await self.outbox.get())

    async def streamer(self, cursor: Cursor) -> None:
        settings = self.gateway.settings
        async for item in self.gateway.service.events(
            cursor, live_buffer=settings.client_queue, page=settings.replay_page
        ):
            if isinstance(item, Reset):
                reset = json.dumps({"type": "reset", "reason": item.reason}, separators=(",", ":"))
                self.post_event(reset)
                return
            event = item.event
            command_id = (
                command_id_of(event.data_json)
                if event.kind == "command" and self.order.waiting
                else None  # nothing is held back: no need to know whose event it is
            )
            self.post_event(encode_event_message(item), command_id)

    async def reader(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:  # a binary frame
                self.post_error(None, BadRequest("frames must be JSON text"))
                continue
            try:
                frame = loads_strict(text)
            except (ValueError, RecursionError):
                self.post_error(None, BadRequest("frames must be JSON objects"))
                continue
            if not isinstance(frame, dict):
                self.post_error(None, BadRequest("frames must be JSON objects"))
                continue
            self.handle(frame)

    def handle(self, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        kind = frame.get("type")
        if kind == "ping":
            self.post({"type": "pong", "ref": ref})
        elif kind in ("send", "cancel"):
            try:
                self.principal.require(Role.OPERATOR)
            except TetherError as exc:
                self.post_error(ref, exc)
                return
            task = asyncio.create_task(self.send(frame) if kind == "send" else self.cancel(frame))
            self.tasks.add(task)
            task.add_done_callback(self._finished)
        else:
            self.post_error(ref, BadRequest(f"unknown frame type {kind!r}"))

    async def send(self, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        command_id = new_command_id()  # known here, so its events can wait for `accepted`
        async with self.sends:
            with self.replying(command_id):
                try:
                    device_id = frame.get("device")
                    validate_device_id(device_id)
                    assert isinstance(device_id, str)
                    request = parse_send(frame, frame.get("idempotency_key"))
                    accepted = await self.gateway.service.send(
                        request.command(command_id, device_id)
                    )
                except Exception as exc:
                    self.post_error(ref, exc)
                    return
                self.post(
                    f'{{"type":"accepted","ref":{json.dumps(ref)},'
                    f'"command":{accepted.record_json}}}'
                )

    async def cancel(self, frame: dict[str, Any]) -> None:
        ref = frame.get("ref")
        command_id = frame.get("command_id")
        if not isinstance(command_id, str) or not command_id:
            self.post_error(ref, BadRequest("cancel needs a command_id"))
            return
        with self.replying(command_id):
            try:
                record = await self.gateway.service.cancel(command_id)
            except Exception as exc:
                self.post_error(ref, exc)
                return
            self.post({"type": "accepted", "ref": ref, "command": record})


async def websocket_endpoint(websocket: WebSocket) -> None:
    gateway = gateway_of(websocket)
    try:
        principal = gateway.authenticate(websocket, Role.VIEWER, allow_query=True)
        text = websocket.query_params.get("last_event_id")
        cursor = gateway.service.decode_cursor(text) if text else None
    except TetherError as exc:
        await websocket.send_denial_response(error_response(exc))
        return
    await websocket.accept()
    if cursor is None:
        # "From now" means from the moment of connecting, fixed before the first frame is read:
        # the events of commands this client sends at once must be in its stream.
        cursor = await gateway.service.current_cursor()
    connection = Connection(websocket, gateway, principal)
    gateway.count("ws_connections")
    tasks = [
        asyncio.create_task(connection.writer(), name="ws-writer"),
        asyncio.create_task(connection.streamer(cursor), name="ws-streamer"),
        asyncio.create_task(connection.reader(), name="ws-reader"),
        asyncio.create_task(connection.watch_overflow(), name="ws-overflow"),
    ]
    close_code: int | None = None  # None: keep serving; -1: the client left
    reason = ""
    pending: set[asyncio.Task[None]] = set(tasks)
    try:
        while pending and close_code is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                failure = task.exception()
                if isinstance(failure, ClientTooSlow):
                    close_code, reason = CLOSE_TOO_SLOW, "client too slow: resume from your cursor"
                    gateway.count("ws_too_slow")
                elif isinstance(failure, WebSocketDisconnect) or (
                    failure is None and task.get_name() == "ws-reader"
                ):
                    close_code = -1
                elif failure is not None:
                    log.error("websocket task failed", exc_info=failure)
                    close_code, reason = 1011, "internal error"
                # else: the streamer ended after a reset; commands are still served
    finally:
        for task in tasks + list(connection.tasks):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
    if close_code is not None and close_code >= 0:
        with contextlib.suppress(Exception):
            # A client that does not read cannot take a close frame either: do not wait for it.
            await asyncio.wait_for(websocket.close(close_code, reason), 2)
