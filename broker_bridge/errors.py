"""The bridge's error hierarchy. Each error carries the stable code the API reports."""

from __future__ import annotations


class TetherError(Exception):
    code = "internal"
    status = 500

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class BadRequest(TetherError):
    code, status = "bad_request", 400


class UnknownDevice(TetherError):
    code, status = "unknown_device", 404


class NotFound(TetherError):
    code, status = "not_found", 404


class Conflict(TetherError):
    code, status = "conflict", 409


class QueueFull(TetherError):
    code, status = "queue_full", 429


class Unavailable(TetherError):
    """The store or the broker cannot take the change now; nothing was accepted. Retry later."""

    code, status = "unavailable", 503
