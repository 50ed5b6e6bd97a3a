"""The one place where an error becomes what a client sees: ``{"error": {"code", "message"}}``.

Every error the project raises on purpose is a :class:`~tether.protocol.errors.TetherError`
carrying its contract code and HTTP status (the gateway raises the same classes:
``raise BadRequest(...)``, ``raise Forbidden(...)``). :func:`client_error` decides what of an
exception a client may read; :func:`error_response` (REST, SSE, the WebSocket handshake) and
:func:`error_frame` (WebSocket ``error`` frames) build the body from it, nothing else does.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tether.protocol.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    QueueFull,
    TetherError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownDevice,
)

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error; the server log has details"


class TooSlow(Unavailable):
    """A stream's client does not keep up: the WebSocket closes with 1013 (try again later),
    the SSE stream ends; the client resumes from its last cursor."""


def is_public(exc: BaseException) -> bool:
    """Whether a client may read ``exc``'s code and message: an error raised on purpose for
    the client (any code but ``internal``). Anything else is a fault whose text stays in the log."""
    return isinstance(exc, TetherError) and exc.code != "internal"


def client_error(exc: BaseException, where: str = "") -> TetherError:
    """``exc`` as the client sees it: itself when public, else an ``internal`` 500 (and the
    real error goes to the log, with ``where`` it happened)."""
    if isinstance(exc, TetherError) and is_public(exc):
        return exc
    log.error("unhandled error%s", f" on {where}" if where else "", exc_info=exc)
    return TetherError(INTERNAL_MESSAGE)


def _body(error: TetherError) -> dict[str, dict[str, str]]:
    return {"error": {"code": error.code, "message": error.message}}


def error_body(exc: BaseException, where: str = "") -> dict[str, dict[str, str]]:
    return _body(client_error(exc, where))


def error_frame(ref: Any, exc: BaseException) -> dict[str, Any]:
    """The WebSocket ``{"type": "error", "ref", "error": {...}}`` frame for ``exc``."""
    return {"type": "error", "ref": ref, **error_body(exc, "a WebSocket")}


def error_response(
    exc: BaseException, headers: dict[str, str] | None = None, where: str = ""
) -> JSONResponse:
    error = client_error(exc, where)
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return JSONResponse(_body(error), error.status, headers=headers)


async def handle_error(request: Request, exc: Exception) -> Response:
    """The app's handler for every exception, raised on purpose or not."""
    return error_response(exc, where=f"{request.method} {request.url.path}")


__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "QueueFull",
    "TetherError",
    "TooLarge",
    "TooSlow",
    "Unauthorized",
    "Unavailable",
    "UnknownDevice",
    "client_error",
    "error_body",
    "error_frame",
    "error_response",
    "handle_error",
    "is_public",
]
