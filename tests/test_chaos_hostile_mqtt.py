"""Chaos, hostile input over MQTT: what ``test_broker_security.py`` and ``test_bridge_acks.py``
leave out. Covered there (not repeated): anonymous and wrong-password connects, client-id
takeover, subscribing to ``#``/``$SYS/#``/another device's ``cmd``, publishing to another
device's ``ack``/``evt``/``status``/``cmd``, forged acks, packets over the cap, and malformed
acks (not JSON, ``[]``, ``\\xff\\xfe``, bad status, ``failed`` without ``error``, bad id).

Here: invalid UTF-8, invalid JSON and hostile JSON (nesting deeper than the parser, integers
longer than Python converts, non-finite numbers, numbers that overflow to infinity) on ``ack``,
``evt`` and ``status``; and one client sending 20,000 subscriptions. Each test keeps a ledger
of the real commands in flight during the attack: nothing may be lost or run twice, the bridge
and broker stay up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.support import store_reader
from tests.support.bridges import BridgeHandle
from tests.support.brokers import PREFIX, BrokerHandle, Credentials
from tests.support.chaos import (
    Fleet,
    broker_pid,
    check,
    ledger,
    rss_kib,
    runs_by_id,
    settle,
)
from tests.support.gateways import RunningGateway
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until
from tether.protocol import decode_command, utc_now
from ui_gateway.auth import Role

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

NOW = utc_now()
HOSTILE = [
    b"\xc3\x28 invalid utf-8",
    b'{"online": true, "at": "\xff"}',
    b"{not json",
    b'{"online": true,',
    b"[" * 60_000 + b"]" * 60_000,  # deeper than any JSON parser recurses
    b'{"online": true, "at": ' + b"9" * 5000 + b"}",  # longer than Python converts
    b'{"name": "x", "data": NaN, "at": "%s"}' % NOW.encode(),
    b'{"name": "x", "data": Infinity, "at": "%s"}' % NOW.encode(),
    b'{"online": "yes"}',
    b'{"name": "' + b"n" * 10_000 + b'", "at": "%s"}' % NOW.encode(),
    b"\x00" * 1000,
    b"",
]


def device_probe(broker: BrokerHandle, creds: Credentials) -> ProbeClient:
    return ProbeClient(
        broker.host,
        broker.port,
        client_id=creds.username,
        username=creds.username,
        password=creds.password,
    ).connect_ok()


@pytest.fixture
def fleet(broker: BrokerHandle, bridge: BridgeHandle, tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(broker, bridge.provision("calm-0"), tmp_path)
    running.start()
    yield running
    running.stop()


def test_invalid_utf8_and_hostile_json_on_ack_evt_status(
    broker: BrokerHandle, bridge: BridgeHandle, fleet: Fleet
) -> None:
    (hostile,) = bridge.provision("rogue-0")
    rogue = device_probe(broker, hostile)
    target = bridge.bridge.send("rogue-0", "echo").result(10).record["id"]
    wait_until(lambda: bridge.state(target) == "sent", what="the rogue's command sent")
    before = [bridge.bridge.send("calm-0", "count", {"n": n}).result(10).record["id"]
              for n in range(10)]  # fmt: skip
    presence = bridge.device("rogue-0")
    stats = bridge.bridge.stats
    baseline = {k: stats[k] for k in ("malformed_ack", "malformed_evt", "malformed_status")}

    for payload in HOSTILE:
        for channel in ("ack", "evt", "status"):
            rogue.publish(f"{PREFIX}/rogue-0/{channel}", payload)
    # Acks naming the rogue's real command, with hostile bodies:
    for body in (
        b'{"id": "%s", "status": "succeeded", "result": ' % target.encode()
        + b"[" * 60_000
        + b"]" * 60_000
        + b', "at": "%s"}' % NOW.encode(),
        b'{"id": "%s", "status": "succeeded", "result": %s, "at": "%s"}'
        % (target.encode(), b"7" * 5000, NOW.encode()),
        b'{"id": "%s", "status": "\xff", "at": "%s"}' % (target.encode(), NOW.encode()),
    ):
        rogue.publish(f"{PREFIX}/rogue-0/ack", body)

    # Every payload is malformed on every channel, except an empty status (a cleared retained
    # message, a no-op by design).
    expected = {
        "malformed_ack": len(HOSTILE) + 3,
        "malformed_evt": len(HOSTILE),
        "malformed_status": len(HOSTILE) - 1,
    }

    def counted() -> dict[str, int]:
        return {k: stats[k] - v for k, v in baseline.items()}

    wait_until(
        lambda: all(counted()[k] >= n for k, n in expected.items()),
        20,
        "every hostile payload counted",
    )
    after = [bridge.bridge.send("calm-0", "count", {"n": n}).result(10).record["id"]
             for n in range(10, 20)]  # fmt: skip
    data_dir = bridge.bridge.settings.data_dir
    settle(data_dir, 20, before + after)
    unchanged = bridge.state(target) == "sent" and bridge.device("rogue-0") == presence
    calm = {i: c for i, c in store_reader.commands(data_dir).items() if c["device_id"] == "calm-0"}
    runs, strays = runs_by_id(calm, fleet.runs, "n")
    outcome = ledger(
        "MQTT: invalid UTF-8 / hostile JSON on ack, evt, status",
        data_dir,
        runs,
        accepted=before + after,
        strays=strays,
        only=before + after,
    ).note(
        f"{len(HOSTILE) * 3 + 3} hostile payloads: "
        + ", ".join(f"{k} +{n}" for k, n in counted().items())
    )
    if not unchanged:
        outcome.unexpected[target] = "a hostile payload changed the rogue's command or presence"
    check(outcome)
    assert counted() == expected
    assert bridge.bridge.session.connected.is_set()
    assert stats["store_errors"] == 0


def test_a_subscription_flood_from_one_client_is_bounded(
    broker: BrokerHandle, bridge: BridgeHandle, fleet: Fleet
) -> None:
    """One device sends 20,000 topic filters (20 SUBSCRIBEs of 1,000): every one it may not
    have is refused, its own ``cmd`` still works, and the broker's memory stays flat."""
    (hostile,) = bridge.provision("rogue-1")
    rogue = device_probe(broker, hostile)
    pid = broker_pid(broker)
    rss_before = rss_kib(pid) if pid else 0
    refused = granted = 0
    for batch in range(20):
        filters = [
            (f"{PREFIX}/victim-{batch}-{i}/cmd" if i % 2 else f"+/{batch}/{i}/#", 1)
            for i in range(1000)
        ]
        result, mid = rogue.client.subscribe(filters)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None
        with rogue._suback_cv:
            assert rogue._suback_cv.wait_for(lambda m=mid: m in rogue._subacks, 20)  # type: ignore[misc]
            reasons = rogue._subacks.pop(mid)
        refused += sum(r.is_failure for r in reasons)
        granted += sum(not r.is_failure for r in reasons)
    for _ in range(1000):  # its own filter, again and again: one subscription
        assert not any(r.is_failure for r in rogue.subscribe(f"{PREFIX}/rogue-1/cmd"))
    rss_after = rss_kib(pid) if pid else 0

    accepted = [bridge.bridge.send("calm-0", "count", {"n": n}).result(10).record["id"]
                for n in range(10)]  # fmt: skip
    own = bridge.bridge.send("rogue-1", "echo", {"still": "served"}).result(10).record["id"]
    delivered = decode_command(rogue.next_message(10).payload)
    assert delivered.id == own and rogue.drain() == []  # exactly its own, nothing of others
    data_dir = bridge.bridge.settings.data_dir
    settle(data_dir, 20, accepted)
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    outcome = ledger(
        "MQTT: 20,000 subscriptions from one client",
        data_dir,
        runs,
        accepted=accepted,
        strays=strays,
        only=accepted,
    ).note(f"{refused} refused, {granted} granted; broker RSS {rss_before} → {rss_after} KiB")
    check(outcome)
    assert (refused, granted) == (20_000, 0)
    if pid:
        assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)


@pytest.fixture
def gateway_fleet(
    broker: BrokerHandle, gateway: RunningGateway, tmp_path: Path
) -> Iterator[tuple[Fleet, Credentials]]:
    with gateway.client(Role.ADMIN) as api:
        creds = []
        for device_id in ("calm-0", "rogue-2"):
            body = api.post("/api/devices", json={"id": device_id}).json()
            creds.append(Credentials(device_id, body["username"], body["password"]))
    running = Fleet(broker, creds[:1], tmp_path)
    running.start()
    yield running, creds[1]
    running.stop()


def strict_json(text: str) -> object:
    """JSON as browsers parse it: ``NaN``/``Infinity`` are not JSON."""

    def refuse(token: str) -> object:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_an_ack_or_event_with_an_overflowing_number_changes_nothing(
    broker: BrokerHandle, gateway: RunningGateway, gateway_fleet: tuple[Fleet, Credentials]
) -> None:
    """``1e999`` parses as infinity, which JSON cannot carry back out (``Infinity`` is not JSON):
    an ack or event holding it is malformed, changes nothing, and no client ever gets a frame
    ``JSON.parse`` refuses. (Found by this suite; fixed in a4fd31f.)"""
    from websockets.sync.client import connect

    from tests.support.gateways import TOKENS

    fleet, hostile = gateway_fleet
    rogue = device_probe(broker, hostile)
    assert not any(r.is_failure for r in rogue.subscribe(f"{PREFIX}/rogue-2/cmd"))
    bridge = gateway.bridge
    viewer_url = f"{gateway.ws_url}?token={TOKENS[Role.VIEWER]}"
    with gateway.client(Role.OPERATOR) as api, connect(viewer_url, open_timeout=5) as viewer:
        target = api.post("/api/devices/rogue-2/commands", json={"name": "echo"}).json()["id"]
        decode_command(rogue.next_message(10).payload)
        accepted = [
            api.post(
                "/api/devices/calm-0/commands", json={"name": "count", "args": {"n": n}}
            ).json()["id"]
            for n in range(5)
        ]
        rogue.publish(
            f"{PREFIX}/rogue-2/ack",
            b'{"id": "%s", "status": "succeeded", "result": {"x": 1e999}, "at": "%s"}'
            % (target.encode(), utc_now().encode()),
        )
        rogue.publish(
            f"{PREFIX}/rogue-2/evt",
            b'{"name": "overflow", "data": -1e999, "at": "%s"}' % utc_now().encode(),
        )
        rogue.publish(  # a fence: a well-formed event after the hostile ones
            f"{PREFIX}/rogue-2/evt", b'{"name": "fence", "data": 1, "at": "%s"}' % NOW.encode()
        )
        frames: list[str] = []
        for _ in range(200):
            frames.append(str(viewer.recv(timeout=10)))
            if '"name":"fence"' in frames[-1]:
                break
        shown = api.get(f"/api/commands/{target}")
        data_dir = bridge.store.data_dir
        settle(data_dir, 20, accepted)
        stored = store_reader.commands(data_dir)
        runs, strays = runs_by_id(stored, fleet.runs, "n")
        outcome = ledger(
            "MQTT: ack/evt holding an overflowing number (1e999)",
            data_dir,
            runs,
            accepted=accepted,
            strays=strays,
            only=accepted,
        )
        if stored[target]["state"] != "sent":
            outcome.unexpected[target] = (
                f"accepted as {stored[target]['state']}: {stored[target]['result']}"
            )
        if shown.status_code != 200:
            outcome.unexpected[f"GET {target}"] = f"answered {shown.status_code}"
        for n, frame in enumerate(frames):
            try:
                strict_json(frame)
            except ValueError as exc:
                outcome.unexpected[f"ws frame {n}"] = f"{exc}: {frame[:120]}"
        outcome.note(f"{len(frames)} WS frames read, all strict JSON")
    check(outcome)
