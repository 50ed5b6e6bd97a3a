"""The one error tree: every error Tether raises on purpose is a :class:`TetherError`.

Each error carries the contract's stable ``code`` (what a client reads in
``{"error": {"code", "message"}}``) and the HTTP ``status`` that goes with it, so the
layers above translate errors by reading them, never by listing classes: the gateway turns
any of them into its JSON error body in one function (``ui_gateway.errors``), the CLI into
one line and an exit code (``tether.cli_errors``).

The classes below are the contract's codes; each package derives its own errors from them
(or from the root, with ``code = "internal"`` for faults that are nobody's input) and keeps
``ValueError``/``RuntimeError`` as a second base where callers catch those. This module is
the ground floor: it imports nothing from the rest of the tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TetherError(Exception):
    """Base of every error the project raises on purpose.

    ``code`` and ``status`` default to the class's; an instance may override them (a
    ``bad_request`` with status 422). ``details`` is structured data for logs and callers;
    it is not shown to clients.
    """

    code: str = "internal"
    status: int = 500

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details: Mapping[str, Any] = details or {}


class BadRequest(TetherError):
    """Input that cannot be used (400; 422 for well-formed JSON with invalid fields)."""

    code, status = "bad_request", 400


class Unauthorized(TetherError):
    code, status = "unauthorized", 401


class Forbidden(TetherError):
    code, status = "forbidden", 403


class NotFound(TetherError):
    code, status = "not_found", 404


class UnknownDevice(TetherError):
    code, status = "unknown_device", 404


class Conflict(TetherError):
    code, status = "conflict", 409


class TooLarge(TetherError):
    code, status = "too_large", 413


class QueueFull(TetherError):
    code, status = "queue_full", 429


class Unavailable(TetherError):
    """The store or the broker cannot take the change now; nothing was accepted. Retry later."""

    code, status = "unavailable", 503


class ProtocolError(BadRequest, ValueError):
    """Input that breaks the contract: every malformed name, topic or payload raises it.

    ``what`` names the thing being checked (``"device id"``, ``"ack"``, …) and ``field`` the
    offending field when there is one, so callers can log or report precisely.
    """

    def __init__(self, what: str, reason: str, field: str | None = None) -> None:
        self.what = what
        self.field = field
        self.reason = reason
        where = f"{what}.{field}" if field else what
        super().__init__(f"{where}: {reason}", details={"what": what, "field": field})


__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "ProtocolError",
    "QueueFull",
    "TetherError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownDevice",
]
