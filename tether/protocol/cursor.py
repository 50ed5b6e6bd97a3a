"""Event cursors: a position in every shard's event log, as one opaque string.

A cursor is the vector of the last sequence number seen in each shard. Reading after it yields
exactly the later events of every shard: no gap, no duplicate. The text form is ``c1.`` followed
by the sequence numbers in base 36, joined by ``-``; clients must treat it as opaque.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tether.protocol.errors import BadRequest

_PREFIX = "c1."
_MAX_LENGTH = 4096
_DIGITS = re.compile(r"[0-9a-z]{1,13}")


class CursorError(BadRequest, ValueError):
    """A cursor that cannot be read, or that belongs to a store with another shard count."""


@dataclass(frozen=True, slots=True)
class Cursor:
    positions: tuple[int, ...]

    @classmethod
    def start(cls, shard_count: int) -> Cursor:
        return cls((0,) * shard_count)

    def advanced(self, shard: int, seq: int) -> Cursor:
        positions = list(self.positions)
        positions[shard] = max(positions[shard], seq)
        return Cursor(tuple(positions))

    def encode(self) -> str:
        return _PREFIX + "-".join(_base36(p) for p in self.positions)

    @classmethod
    def decode(cls, text: str, shard_count: int) -> Cursor:
        if not isinstance(text, str) or len(text) > _MAX_LENGTH or not text.startswith(_PREFIX):
            raise CursorError("not a Tether event cursor")
        parts = text[len(_PREFIX) :].split("-")
        if len(parts) != shard_count:
            raise CursorError(f"cursor is for {len(parts)} shards; this store has {shard_count}")
        if not all(_DIGITS.fullmatch(part) for part in parts):
            raise CursorError("not a Tether event cursor")
        return cls(tuple(int(part, 36) for part in parts))


class MovingCursor:
    """A cursor a live stream advances one event at a time: only the moved shard's part is
    encoded again (a stream encodes one cursor per event it sends)."""

    def __init__(self, start: Cursor) -> None:
        self._positions = list(start.positions)
        self._parts = [_base36(p) for p in self._positions]

    def covers(self, shard: int, seq: int) -> bool:
        return seq <= self._positions[shard]

    def advance(self, shard: int, seq: int) -> str:
        """Move to ``seq`` in ``shard`` (never backwards) and return the new cursor's text."""
        if seq > self._positions[shard]:
            self._positions[shard] = seq
            self._parts[shard] = _base36(seq)
        return _PREFIX + "-".join(self._parts)

    @property
    def cursor(self) -> Cursor:
        return Cursor(tuple(self._positions))


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    if value == 0:
        return "0"
    out = []
    while value:
        value, rest = divmod(value, 36)
        out.append(digits[rest])
    return "".join(reversed(out))
