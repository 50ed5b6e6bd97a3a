"""Message outcomes since start (``/metrics``' ``tether_bridge_messages``), any thread."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    def __init__(self) -> None:
        self._values: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._values[key] += n

    def __getitem__(self, key: str) -> int:
        return self._values[key]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def items(self) -> list[tuple[str, int]]:
        return list(self.snapshot().items())
