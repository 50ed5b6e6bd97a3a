"""The bridge's MQTT session runs paho as an external loop: what paho's own loop used to do."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from broker_bridge.mqtt_session import MqttSession, SessionSettings
from tests.support.brokers import BrokerHandle

pytestmark = pytest.mark.broker


def admin_settings(broker: BrokerHandle, client_id: str, **kw: Any) -> SessionSettings:
    return SessionSettings(
        broker.host,
        broker.port,
        broker.admin_username,
        broker.admin_password,
        client_id=client_id,
        **kw,
    )


def test_an_idle_session_pings_the_broker(broker: BrokerHandle) -> None:
    """With paho's own loop gone, the session's loop must send the keepalive PINGREQs itself
    (paho's ``loop_misc``): they keep an idle bridge's connection open, and a missing PINGRESP
    is how a half-open connection is noticed. Mosquitto 2.0.11 was seen not to drop a silent
    client within seconds, so the test watches the pings themselves."""
    connects: list[bool] = []
    session = MqttSession(
        admin_settings(broker, "tether-bridge-keepalive-test", keepalive=1),
        [],
        on_message=lambda message: None,
        on_connected=connects.append,
    )
    pongs = threading.Semaphore(0)
    # A test-only look into paho's log: the session keeps its client private.
    session._client.on_log = lambda _c, _u, _level, text: (
        pongs.release() if "PINGRESP" in text else None
    )
    session.start()
    try:
        for n in range(3):
            assert pongs.acquire(timeout=5), f"no PINGRESP #{n + 1} within 5 s (keepalive 1 s)"
        assert session.connected.is_set()
        assert len(connects) == 1, "the session reconnected"
    finally:
        session.stop()


def test_work_queued_from_another_thread_runs_on_the_session_thread(
    broker: BrokerHandle,
) -> None:
    """Other threads hand work in through ``wake``; it runs on the session's own thread, and
    stopping the session runs whatever is still queued."""
    queued: list[int] = []
    ran: list[tuple[int, str]] = []
    done = threading.Event()

    def work() -> bool:
        if not queued:
            return False
        ran.append((queued.pop(0), threading.current_thread().name))
        if len(ran) == 50:
            done.set()
        return True

    session = MqttSession(
        admin_settings(broker, "tether-bridge-wake-test"),
        [],
        on_message=lambda message: None,
        work=work,
    )
    session.start()
    try:
        for n in range(50):
            queued.append(n)
            session.wake()
        assert done.wait(5)
    finally:
        session.stop()
    assert [n for n, _ in ran] == list(range(50))
    assert {name for _, name in ran} == {"bridge-io"}
