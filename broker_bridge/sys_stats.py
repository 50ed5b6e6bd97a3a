"""Mosquitto's ``$SYS`` figures as the bridge last saw them: a pure parser and a small holder.

Mosquitto 2.0 publishes these every ``sys_interval`` seconds (2 s in Tether's config).
"""

from __future__ import annotations

import threading
import time

# $SYS topic → the name Tether reports it under
FIGURES: dict[str, str] = {
    "$SYS/broker/clients/connected": "clients_connected",
    "$SYS/broker/clients/disconnected": "clients_disconnected",
    "$SYS/broker/clients/maximum": "clients_maximum",
    "$SYS/broker/load/messages/received/1min": "messages_received_per_min",
    "$SYS/broker/load/messages/sent/1min": "messages_sent_per_min",
    "$SYS/broker/load/bytes/received/1min": "bytes_received_per_min",
    "$SYS/broker/load/bytes/sent/1min": "bytes_sent_per_min",
    "$SYS/broker/load/publish/dropped/1min": "publish_dropped_per_min",
    "$SYS/broker/publish/messages/dropped": "publish_dropped_total",
    "$SYS/broker/messages/received": "messages_received_total",
    "$SYS/broker/messages/sent": "messages_sent_total",
    "$SYS/broker/store/messages/count": "stored_messages",
    "$SYS/broker/store/messages/bytes": "stored_bytes",
    "$SYS/broker/retained messages/count": "retained_messages",
    "$SYS/broker/subscriptions/count": "subscriptions",
    "$SYS/broker/heap/current": "heap_bytes",
    "$SYS/broker/heap/maximum": "heap_bytes_maximum",
    "$SYS/broker/uptime": "uptime_seconds",
}
SUBSCRIPTION = "$SYS/#"


def parse_figure(topic: str, payload: bytes) -> tuple[str, float] | None:
    """``("clients_connected", 12.0)`` for a figure Tether keeps, else None."""
    name = FIGURES.get(topic)
    if name is None:
        return None
    text = payload.decode("ascii", "replace").strip()
    if name == "uptime_seconds":
        text = text.split(" ", 1)[0]  # "123 seconds"
    try:
        value = float(text)
    except ValueError:
        return None
    if name.startswith("heap") and value >= 2**48:
        return None  # a build without memory tracking reports garbage here
    return name, value


class BrokerFigures:
    """Thread-safe latest values, with the time they arrived."""

    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self._updated = 0.0
        self._version = ""
        self._lock = threading.Lock()

    def offer(self, topic: str, payload: bytes) -> None:
        if topic == "$SYS/broker/version":
            with self._lock:
                self._version = payload.decode("utf-8", "replace")
            return
        figure = parse_figure(topic, payload)
        if figure is not None:
            with self._lock:
                self._values[figure[0]] = figure[1]
                self._updated = time.time()

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            age = time.time() - self._updated if self._updated else None
            return {
                "version": self._version or None,
                "figures": dict(self._values),
                "age_seconds": round(age, 1) if age is not None else None,
            }
