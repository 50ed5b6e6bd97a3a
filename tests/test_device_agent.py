"""The device agent against a real Mosquitto: acks, exactly-once, order, malformed input, presence.

A plain paho client (the :class:`Watcher`, logged in as the bridge) publishes commands and reads
acks, events and statuses. Absence is proven with a fence: commands run one at a time in arrival
order, so once a later command's final ack is in, everything before it has been handled.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devices import demo
from devices.agent import DeviceAgent
from devices.config import MqttVersion
from devices.errors import BadArgs, JournalError
from devices.journal import MemoryJournal, SqliteJournal
from tests.support.brokers import BrokerHandle
from tests.support.devices import Watcher, agent_for, command
from tests.support.waiting import wait_until
from tether.protocol import (
    AckMessage,
    AckStatus,
    CommandMessage,
    format_time,
    new_command_id,
    utc_now,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def watcher(broker: BrokerHandle) -> Iterator[Watcher]:
    w = Watcher(broker, "dev-a")
    yield w
    w.close()


def started(agent: DeviceAgent) -> DeviceAgent:
    agent.start()
    assert agent.wait_connected(10), "agent did not connect"
    return agent


@pytest.mark.parametrize("version", [MqttVersion.V5, MqttVersion.V311])
def test_round_trip_received_then_succeeded(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path, version: MqttVersion
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path, mqtt_version=version)
    calls: list[dict[str, Any]] = []

    @agent.command("add")
    def add(args: dict[str, Any]) -> Any:
        calls.append(args)
        return {"sum": args["a"] + args["b"]}

    with started(agent):
        cmd = command("add", {"a": 2, "b": 3})
        watcher.send(cmd)
        final = watcher.final(cmd.id)
        assert [a.status for a in watcher.acks_for(cmd.id)] == [
            AckStatus.RECEIVED,
            AckStatus.SUCCEEDED,
        ]
        assert final.result == {"sum": 5}
        assert calls == [{"a": 2, "b": 3}]
        received = watcher.acks_for(cmd.id)[0]
        assert received.at <= final.at


def test_same_command_id_twice_runs_once_and_resends_the_stored_ack(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    runs: list[str] = []

    @agent.command("bump")
    def bump(args: dict[str, Any]) -> Any:
        runs.append("run")
        return {"runs": len(runs)}

    with started(agent):
        cmd = command("bump")
        watcher.send(cmd)
        first = watcher.final(cmd.id)
        watcher.send(cmd)
        watcher.wait(lambda w: len(w.finals(cmd.id)) == 2, what="the re-sent final ack")
        fence = command("bump")
        watcher.send(fence)
        watcher.final(fence.id)
    assert runs == ["run", "run"]  # the command once, the fence once
    statuses = [a.status for a in watcher.acks_for(cmd.id)]
    assert statuses == [AckStatus.RECEIVED, AckStatus.SUCCEEDED, AckStatus.SUCCEEDED]
    assert watcher.finals(cmd.id) == [first, first]  # byte for byte: the stored ack, same `at`


def test_a_finished_command_is_not_run_again_by_a_restarted_agent(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    runs: list[str] = []

    def install(agent: DeviceAgent) -> DeviceAgent:
        agent.registry.add("once", lambda args: runs.append("run") or {"ok": True})
        return agent

    cmd = command("once")
    with started(install(agent_for(broker, creds, tmp_path))):
        watcher.send(cmd)
        first = watcher.final(cmd.id)
    with started(install(agent_for(broker, creds, tmp_path))):  # same journal file
        watcher.send(cmd)
        watcher.wait(lambda w: len(w.finals(cmd.id)) == 2, what="the re-sent final ack")
    assert runs == ["run"]
    assert watcher.finals(cmd.id) == [first, first]


@pytest.mark.parametrize("version", [MqttVersion.V5, MqttVersion.V311])
def test_commands_sent_while_offline_all_run_once_in_order(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path, version: MqttVersion
) -> None:
    (creds,) = broker.provision("dev-a")
    ran: list[str] = []

    def install(agent: DeviceAgent) -> DeviceAgent:
        @agent.command("step")
        def step(args: dict[str, Any]) -> Any:
            ran.append(args["n"])
            return {"n": args["n"]}

        return agent

    # First session: the broker learns the persistent session and its subscription.
    started(install(agent_for(broker, creds, tmp_path, mqtt_version=version))).stop()
    watcher.wait_online(False)
    commands = [command("step", {"n": f"c{i:02d}"}) for i in range(20)]
    for cmd in commands:
        watcher.send(cmd)  # PUBACKed by the broker: queued in the device's session
    with started(install(agent_for(broker, creds, tmp_path, mqtt_version=version))):
        for cmd in commands:
            watcher.final(cmd.id)
    assert ran == [f"c{i:02d}" for i in range(20)]
    for cmd in commands:
        statuses = [a.status for a in watcher.acks_for(cmd.id)]
        assert statuses == [AckStatus.RECEIVED, AckStatus.SUCCEEDED], cmd.id


def test_malformed_payloads_are_rejected_or_ignored_and_the_agent_keeps_working(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devices")
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    echoed: list[Any] = []
    agent.registry.add("echo", lambda args: echoed.append(args) or args)
    now = utc_now()
    wrong_name, huge, args_list, bad_time = (new_command_id() for _ in range(4))
    ignored = [
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2, 3]",
        b'{"name": "echo", "args": {}, "issued_at": "%s"}' % now.encode(),  # no id
        b'{"id": "not-a-uuid", "name": "echo", "args": {}, "issued_at": "%s"}' % now.encode(),
        b'{"id": 12, "name": "echo"}',
    ]
    rejected = {
        wrong_name: {"id": wrong_name, "name": 5, "args": {}, "issued_at": now},
        huge: {"id": huge, "name": "echo", "args": {"blob": "x" * 70_000}, "issued_at": now},
        args_list: {"id": args_list, "name": "echo", "args": [1, 2], "issued_at": now},
        bad_time: {"id": bad_time, "name": "echo", "issued_at": now, "expires_at": "tomorrow"},
    }
    with started(agent):
        for payload in ignored:
            watcher.send(payload)
        for obj in rejected.values():
            watcher.send(json.dumps(obj).encode())
        good = command("echo", {"still": "working"})
        watcher.send(good)
        assert watcher.final(good.id).result == {"still": "working"}
        assert agent.connected
    # The fence has its answer, so every malformed payload before it has been handled.
    assert echoed == [{"still": "working"}]
    answered = {a.id for a in watcher.acks}
    assert answered == {*rejected, good.id}
    for command_id in rejected:
        (ack,) = watcher.acks_for(command_id)  # no `received`: rejected before anything ran
        assert ack.status is AckStatus.REJECTED
    assert "name" in watcher.acks_for(wrong_name)[0].error  # type: ignore[operator]
    assert "65536" in watcher.acks_for(huge)[0].error  # type: ignore[operator]
    assert "args" in watcher.acks_for(args_list)[0].error  # type: ignore[operator]
    assert "expires_at" in watcher.acks_for(bad_time)[0].error  # type: ignore[operator]
    ignored_logs = [r for r in caplog.records if "ignoring a command payload" in r.getMessage()]
    assert len(ignored_logs) == len(ignored)


def test_unknown_bad_args_raising_and_expired_commands(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    ran: list[str] = []

    def needs_int(args: dict[str, Any]) -> None:
        if not isinstance(args.get("n"), int):
            raise BadArgs("n must be an integer")

    @agent.command("count", validate=needs_int)
    def count(args: dict[str, Any]) -> Any:
        ran.append("count")
        return args["n"]

    @agent.command("explode")
    def explode(args: dict[str, Any]) -> Any:
        ran.append("explode")
        raise RuntimeError("disk on fire")

    @agent.command("picky")
    def picky(args: dict[str, Any]) -> Any:
        ran.append("picky")
        raise BadArgs("only on Tuesdays")

    past = format_time(datetime.now(UTC) - timedelta(seconds=5))
    future = format_time(datetime.now(UTC) + timedelta(hours=1))
    unknown = command("nope")
    bad_args = command("count", {"n": "three"})
    raising = command("explode")
    in_handler = command("picky")
    expired = command("count", {"n": 1}, expires_at=past)
    fresh = command("count", {"n": 2}, expires_at=future)
    with started(agent):
        for cmd in (unknown, bad_args, raising, in_handler, expired, fresh):
            watcher.send(cmd)
        assert watcher.final(fresh.id).result == 2
    assert ran == ["explode", "picky", "count"]
    u, b, r, p, e = (watcher.final(c.id) for c in (unknown, bad_args, raising, in_handler, expired))
    assert (u.status, u.error) == (AckStatus.REJECTED, "unknown command 'nope'")
    assert (b.status, b.error) == (AckStatus.REJECTED, "bad args: n must be an integer")
    assert (r.status, r.error) == (AckStatus.FAILED, "disk on fire")
    assert (p.status, p.error) == (AckStatus.REJECTED, "only on Tuesdays")
    assert e.status is AckStatus.EXPIRED and "expires_at" in (e.error or "")
    # Rejected before running: no `received`. Run and then failed or rejected: `received` first.
    assert [a.status for a in watcher.acks_for(unknown.id)] == [AckStatus.REJECTED]
    assert [a.status for a in watcher.acks_for(expired.id)] == [AckStatus.EXPIRED]
    assert [a.status for a in watcher.acks_for(raising.id)] == [
        AckStatus.RECEIVED,
        AckStatus.FAILED,
    ]


def test_a_blocked_handler_does_not_block_the_connection(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    @agent.command("hold")
    def hold(args: dict[str, Any]) -> Any:
        order.append(args["tag"])
        entered.set()
        assert release.wait(10)
        return "released"

    with started(agent):
        first, second = command("hold", {"tag": "first"}), command("hold", {"tag": "second"})
        watcher.send(first)
        watcher.send(second)
        assert entered.wait(10)
        # The handler holds the worker; the network thread still moves events both ways.
        assert agent.emit("while-busy", {"ok": True})
        watcher.wait(lambda w: any(e.name == "while-busy" for e in w.events), what="the event")
        assert watcher.finals(first.id) == [] and order == ["first"]
        release.set()
        watcher.final(second.id)
    assert order == ["first", "second"]


def test_a_command_the_journal_could_not_record_is_delivered_again(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    """No PUBACK before the journal has the command: a failed record means redelivery."""

    class FlakyJournal(MemoryJournal):
        failed = threading.Event()

        def record_received(self, command: CommandMessage) -> None:
            if not self.failed.is_set():
                self.failed.set()
                raise JournalError("disk full")
            super().record_received(command)

    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path, journal=FlakyJournal())
    runs: list[str] = []
    agent.registry.add("once", lambda args: runs.append("run") or "done")
    with started(agent):
        cmd = command("once")
        watcher.send(cmd)
        assert FlakyJournal.failed.wait(10)
        agent.drop_connection(reconnect_after=0.05)  # a new session: the broker resends it
        assert watcher.final(cmd.id).result == "done"
    assert runs == ["run"]
    assert [a.status for a in watcher.acks_for(cmd.id)] == [
        AckStatus.RECEIVED,
        AckStatus.SUCCEEDED,
    ]


def test_status_is_retained_with_a_last_will_and_reconnects(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    started(agent)
    try:
        watcher.wait_online(True)
        online = watcher.statuses[-1]
        assert online.agent and online.agent.startswith("tether-device/") and online.at
        agent.drop_connection(reconnect_after=0.1)  # a network failure: the broker sends the Will
        watcher.wait_online(False)
        assert watcher.statuses[-1].at is None  # the Will itself: {"online": false}
        watcher.wait_online(True, count=2)
        assert agent.wait_connected(10)
    finally:
        agent.stop()
    watcher.wait_online(False, count=2)
    assert watcher.statuses[-1].at is not None  # a clean stop says offline itself
    late = Watcher(broker, "dev-a")  # a new subscriber gets the last status, retained
    try:
        late.wait_online(False)
        assert late.status_retained == [True]
    finally:
        late.close()


def test_the_agent_comes_back_after_a_broker_restart(broker: BrokerHandle, tmp_path: Path) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    agent.registry.add("echo", lambda args: args)
    with started(agent):
        broker.restart()
        watcher = Watcher(broker, "dev-a")
        try:
            cmd = command("echo", {"after": "restart"})
            watcher.send(cmd)  # queued in the persistent session if the agent is not back yet
            assert watcher.final(cmd.id, timeout=20).result == {"after": "restart"}
        finally:
            watcher.close()


def test_events_are_buffered_offline_with_a_bound_and_a_drop_count(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path, event_buffer=3)
    for n in range(5):
        assert not agent.emit("reading", {"n": n})  # not connected yet: buffered
    assert (agent.events_buffered, agent.events_dropped) == (3, 2)
    with started(agent):
        watcher.wait(lambda w: len(w.events) == 3, what="the buffered events")
        assert agent.emit("reading", {"n": 5})
        watcher.wait(lambda w: len(w.events) == 4, what="the live event")
    # Oldest dropped first; the rest arrive in order, then the live one.
    assert [e.data for e in watcher.events] == [{"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}]
    assert agent.events_dropped == 2


def test_reboot_demo_command_acks_then_drops_and_restores_the_connection(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:
    (creds,) = broker.provision("dev-a")
    agent = agent_for(broker, creds, tmp_path)
    demo.install(agent)
    with started(agent):
        watcher.wait_online(True)
        reboot = command("reboot", {"delay": 0.1})
        watcher.send(reboot)
        assert watcher.final(reboot.id).result == {"rebooting": True, "delay": 0.1}
        watcher.wait_online(False)  # the Will: the connection really dropped
        watcher.wait_online(True, count=2)
        cfg = command("set_config", {"interval": 5})
        watcher.send(cfg)
        assert watcher.final(cfg.id).result == {"config": {"interval": 5}}


def test_final_acks_the_broker_never_confirmed_are_sent_again_after_a_restart(
    broker: BrokerHandle, watcher: Watcher, tmp_path: Path
) -> None:

    (creds,) = broker.provision("dev-a")
    path = tmp_path / "journal.sqlite3"
    confirmed = command("echo", {"n": 1})
    with started(agent_for(broker, creds, tmp_path, journal_path=path)) as agent:
        agent.registry.add("echo", lambda args: args)
        watcher.send(confirmed)
        watcher.final(confirmed.id)
        probe = SqliteJournal(path)
        wait_until(lambda: not probe.unconfirmed(), what="the PUBACK of the final ack recorded")
    # A final ack recorded just before a crash, its PUBACK never seen:
    lost = AckMessage(new_command_id(), AckStatus.FAILED, utc_now(), error="disk on fire")
    probe.record_final(lost, "burn")
    probe.close()
    with started(agent_for(broker, creds, tmp_path, journal_path=path)) as agent:
        agent.registry.add("echo", lambda args: args)
        assert watcher.final(lost.id) == lost  # re-sent as recorded
        fence = command("echo", {"n": 2})
        watcher.send(fence)
        watcher.final(fence.id)
    assert len(watcher.finals(confirmed.id)) == 1  # confirmed: not sent again
