from __future__ import annotations

import pytest

from broker_bridge.sys_stats import BrokerFigures, parse_figure


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        ("$SYS/broker/clients/connected", b"12", ("clients_connected", 12.0)),
        (
            "$SYS/broker/load/messages/received/1min",
            b"1299.52",
            ("messages_received_per_min", 1299.52),
        ),
        ("$SYS/broker/uptime", b"345 seconds", ("uptime_seconds", 345.0)),
        ("$SYS/broker/heap/current", b"18446744073709551615", None),
        ("$SYS/broker/heap/current", b"5242880", ("heap_bytes", 5242880.0)),
        ("$SYS/broker/clients/connected", b"lots", None),
        ("$SYS/broker/unknown", b"1", None),
    ],
)
def test_parse_figure(topic: str, payload: bytes, expected: tuple[str, float] | None) -> None:
    assert parse_figure(topic, payload) == expected


def test_snapshot_keeps_the_latest_values_and_the_version() -> None:
    figures = BrokerFigures()
    figures.offer("$SYS/broker/version", b"mosquitto version 2.0.11")
    figures.offer("$SYS/broker/clients/connected", b"1")
    figures.offer("$SYS/broker/clients/connected", b"2")
    snapshot = figures.snapshot()
    assert snapshot["version"] == "mosquitto version 2.0.11"
    assert snapshot["figures"] == {"clients_connected": 2.0}
