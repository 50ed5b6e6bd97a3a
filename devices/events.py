"""Device events held while the device is offline: bounded, with a stated overflow policy.

Policy: when the buffer is full the *oldest* event is dropped (``drop_oldest``, the default): a
device coming back reports what is current, and the count of dropped events says how much history
is missing. ``drop_newest`` keeps the first events instead. Either way :attr:`EventBuffer.dropped`
counts every event lost, and nothing grows without bound.
"""

from __future__ import annotations

import enum
from collections import deque

from tether.protocol import DeviceEventMessage

DEFAULT_EVENT_BUFFER = 1000


class OverflowPolicy(enum.StrEnum):
    DROP_OLDEST = "drop_oldest"
    DROP_NEWEST = "drop_newest"


class EventBuffer:
    """Not thread-safe: the agent guards it with its own lock."""

    def __init__(
        self, limit: int = DEFAULT_EVENT_BUFFER, policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    ) -> None:
        if limit < 0:
            raise ValueError("the event buffer limit cannot be negative")
        self.limit = limit
        self.policy = policy
        self.dropped = 0
        self._events: deque[DeviceEventMessage] = deque()

    def push(self, event: DeviceEventMessage) -> bool:
        """Buffer an event; False if the buffer was full and an event was dropped."""
        if len(self._events) < self.limit:
            self._events.append(event)
            return True
        self.dropped += 1
        if self.policy is OverflowPolicy.DROP_OLDEST and self.limit > 0:
            self._events.popleft()
            self._events.append(event)
        return False

    def drain(self) -> list[DeviceEventMessage]:
        events = list(self._events)
        self._events.clear()
        return events

    def __len__(self) -> int:
        return len(self._events)
