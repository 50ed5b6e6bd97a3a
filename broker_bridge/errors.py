"""The bridge's errors: the contract's codes from the one tree (:mod:`tether.protocol.errors`).

The bridge raises these by name (``raise UnknownDevice(...)``); the store's own faults
(``StoreUnavailable``, ``SchemaError``, ``StoreConfigError``) derive from the same root.
"""

from __future__ import annotations

from tether.protocol.errors import (
    BadRequest,
    Conflict,
    NotFound,
    QueueFull,
    TetherError,
    Unavailable,
    UnknownDevice,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "NotFound",
    "QueueFull",
    "TetherError",
    "Unavailable",
    "UnknownDevice",
]
