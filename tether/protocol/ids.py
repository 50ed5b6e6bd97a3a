"""Device ids (checked wherever they enter) and server-generated command ids (UUIDv7)."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable

from tether.protocol.errors import ProtocolError

# An id is one topic level: never '/', '+', '#', '$', whitespace or NUL. Wildcards in an id would be
# an ACL bypass, so the pattern is an allow-list rather than a deny-list.
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
DEVICE_ID_MAX_LENGTH = 64
# A path or frame naming a command longer than this names none (ids are 36 characters).
COMMAND_ID_MAX_LENGTH = 64


def validate_device_id(value: object) -> str:
    """Return ``value`` if it is a valid device id, else raise :class:`ProtocolError`."""
    if not isinstance(value, str):
        raise ProtocolError("device id", f"must be a string, got {type(value).__name__}")
    if not DEVICE_ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ProtocolError(
            "device id",
            f"{shown!r} is not allowed: use 1-{DEVICE_ID_MAX_LENGTH} characters from "
            "A-Z a-z 0-9 _ . : - starting with a letter or digit",
        )
    return value


def is_valid_device_id(value: object) -> bool:
    return isinstance(value, str) and DEVICE_ID_PATTERN.fullmatch(value) is not None


_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def is_valid_command_id(value: object) -> bool:
    return isinstance(value, str) and _UUID_RE.fullmatch(value) is not None


class CommandIdGenerator:
    """UUIDv7 ids (RFC 9562), strictly increasing within one generator.

    The 12 ``rand_a`` bits carry a counter that restarts at a random small value each millisecond
    (RFC 9562 method 1), so ids made in the same millisecond still sort in creation order. If the
    counter overflows, or the clock steps back, the timestamp is carried forward instead.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._clock_ms = clock_ms
        self._random_bytes = random_bytes
        self._last_ms = -1
        self._counter = 0
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                self._last_ms = now
                self._counter = int.from_bytes(self._random_bytes(1), "big")  # leaves headroom
            else:
                self._counter += 1
                if self._counter > 0xFFF:
                    self._last_ms += 1
                    self._counter = 0
            ms, counter = self._last_ms, self._counter
        tail = int.from_bytes(self._random_bytes(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | tail
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


new_command_id = CommandIdGenerator()
