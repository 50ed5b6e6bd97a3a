"""Reconnect delays: exponential backoff with full jitter, capped. Pure: no clock, no sleeping.

``delay = uniform(0, min(cap, base * 2**attempt))`` (the "full jitter" of the AWS architecture
blog), so a fleet that lost its broker at the same moment does not come back in lock-step. A small
floor (``min(floor, base)``) keeps a run of draws near zero from turning into a busy loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

DEFAULT_BASE = 0.5
DEFAULT_CAP = 60.0
DEFAULT_FLOOR = 0.1


@dataclass(slots=True)
class Backoff:
    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    floor: float = DEFAULT_FLOOR
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}")
        if self.floor < 0:
            raise ValueError(f"backoff floor {self.floor} cannot be negative")

    def ceiling(self) -> float:
        """The upper bound of the next delay: ``min(cap, base * 2**attempt)``."""
        return min(self.cap, self.base * 2.0 ** min(self.attempt, 60))

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one more failed attempt."""
        delay = max(min(self.floor, self.base), self.rng.uniform(0.0, self.ceiling()))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: the next failure starts again from ``base``."""
        self.attempt = 0
