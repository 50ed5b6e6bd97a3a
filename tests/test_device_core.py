"""The device's pure parts: command plans, outcomes, backoff, the event buffer, settings."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices.backoff import Backoff
from devices.config import WEEK, AgentSettings, MqttVersion, parse_broker
from devices.core import (
    INTERRUPTED,
    MAX_RESULT_BYTES,
    Step,
    outcome_ack,
    plan_command,
    plan_recovery,
    read_command,
)
from devices.errors import BadArgs, ConfigError
from devices.events import EventBuffer, OverflowPolicy
from devices.handlers import HandlerRegistry, arg
from devices.journal import Entry
from devices.session import connect_args
from tether.protocol import AckMessage, AckStatus, DeviceEventMessage, format_time, new_command_id

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()

    def positive(args: dict[str, Any]) -> None:
        if arg(args, "n", int) <= 0:
            raise BadArgs("n must be positive")

    reg.add("echo", lambda args: args)
    reg.add("count", lambda args: args["n"], validate=positive)
    reg.add("retry_me", lambda args: None, idempotent=True)
    return reg


def raw(**fields: Any) -> bytes:
    base: dict[str, Any] = {"id": new_command_id(), "name": "echo", "args": {}}
    base["issued_at"] = format_time(NOW)
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...}).encode()


def plan(payload: bytes, stored: Entry | None = None) -> Any:
    return plan_command(read_command(payload), stored, registry().lookup, NOW)


def test_a_good_command_is_run() -> None:
    p = plan(raw(name="count", args={"n": 3}))
    assert p.step is Step.RUN and p.command is not None and p.spec is not None
    assert (p.command.name, p.command.args, p.spec.name) == ("count", {"n": 3}, "count")


@pytest.mark.parametrize(
    "payload",
    [b"", b"nope", b"\xff", b"[]", b'"id"', raw(id=...), raw(id="123"), raw(id=7)],
)
def test_a_payload_without_a_readable_id_is_ignored(payload: bytes) -> None:
    p = plan(payload)
    assert p.step is Step.IGNORE and p.command_id is None and p.reason


@pytest.mark.parametrize(
    ("fields", "in_error"),
    [
        ({"name": ""}, "name"),
        ({"name": ["echo"]}, "name"),
        ({"args": "x"}, "args"),
        ({"args": {"b": "x" * 70_000}}, "65536"),
        ({"issued_at": ...}, "issued_at"),
        ({"issued_at": "yesterday"}, "issued_at"),
        ({"expires_at": 5}, "expires_at"),
        ({"name": "nope"}, "unknown command 'nope'"),
        ({"name": "count", "args": {"n": -1}}, "bad args: n must be positive"),
        ({"name": "count", "args": {"n": "1"}}, "bad args: n must be int"),
    ],
)
def test_a_readable_id_with_a_bad_command_is_rejected(
    fields: dict[str, Any], in_error: str
) -> None:
    command_id = new_command_id()
    p = plan(raw(id=command_id, **fields))
    assert p.step is Step.FINISH and p.ack is not None
    assert (p.ack.id, p.ack.status) == (command_id, AckStatus.REJECTED)
    assert in_error in (p.ack.error or ""), p.ack.error


def test_past_expires_at_is_expired_not_run() -> None:
    p = plan(raw(expires_at=format_time(NOW - timedelta(microseconds=1))))
    assert p.step is Step.FINISH and p.ack is not None and p.ack.status is AckStatus.EXPIRED
    assert plan(raw(expires_at=format_time(NOW + timedelta(seconds=1)))).step is Step.RUN
    assert plan(raw(expires_at=format_time(NOW))).step is Step.FINISH  # at the instant: too late


def test_a_seen_id_is_answered_from_the_journal() -> None:
    command_id = new_command_id()
    final = AckMessage(command_id, AckStatus.SUCCEEDED, format_time(NOW), result=1)
    done = Entry(command_id, "echo", None, final)
    running = Entry(command_id, "echo", read_command(raw(id=command_id)).command, None)
    assert plan(raw(id=command_id), done).step is Step.RESEND
    assert plan(raw(id=command_id), done).ack == final
    # Even a malformed copy of a finished id gets the stored answer, not a new verdict.
    assert plan(raw(id=command_id, args="broken"), done).ack == final
    assert plan(raw(id=command_id), running).step is Step.PENDING


def test_recovery_reruns_idempotent_handlers_and_reports_others_interrupted() -> None:
    for name, expected in (("echo", Step.FINISH), ("retry_me", Step.RUN), ("gone", Step.FINISH)):
        command = read_command(raw(name=name)).command
        assert command is not None
        p = plan_recovery(Entry(command.id, name, command, None), registry().lookup, NOW)
        assert p.step is expected, name
        if expected is Step.FINISH:
            assert p.ack is not None
            assert (p.ack.status, p.ack.error) == (AckStatus.FAILED, INTERRUPTED)


def test_outcomes() -> None:
    cid = new_command_id()
    assert outcome_ack(cid, NOW, result={"a": 1}).status is AckStatus.SUCCEEDED
    failed = outcome_ack(cid, NOW, error=RuntimeError("boom"))
    assert (failed.status, failed.error) == (AckStatus.FAILED, "boom")
    assert outcome_ack(cid, NOW, error=KeyError()).error == "KeyError"  # no message: its type
    assert outcome_ack(cid, NOW, error=BadArgs("no")).status is AckStatus.REJECTED
    unencodable = outcome_ack(cid, NOW, result={1, 2})
    assert unencodable.status is AckStatus.FAILED and "JSON" in (unencodable.error or "")
    huge = outcome_ack(cid, NOW, result="x" * MAX_RESULT_BYTES)
    assert huge.status is AckStatus.FAILED and "limit" in (huge.error or "")
    long_error = outcome_ack(cid, NOW, error=RuntimeError("e" * 10_000))
    assert len(long_error.error or "") == 4096
    assert outcome_ack(cid, NOW, result=float("nan")).status is AckStatus.FAILED


def test_backoff_is_full_jitter_capped_and_resets() -> None:
    backoff = Backoff(base=0.5, cap=8.0, floor=0.1, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0.1 <= d <= 8.0 for d in delays)
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(200)]
    assert all(d <= max(c, 0.1) for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[10:]) > 6  # the cap is reached...
    assert min(delays[10:]) < 2  # ...and the jitter is full, down towards zero
    backoff.reset()
    assert backoff.next_delay() <= 0.5
    with pytest.raises(ValueError, match="base"):
        Backoff(base=2, cap=1)


def test_event_buffer_policies() -> None:
    def ev(n: int) -> DeviceEventMessage:
        return DeviceEventMessage("e", format_time(NOW), n)

    oldest = EventBuffer(2)
    assert [oldest.push(ev(n)) for n in range(4)] == [True, True, False, False]
    assert [e.data for e in oldest.drain()] == [2, 3] and oldest.dropped == 2 and not oldest
    newest = EventBuffer(2, OverflowPolicy.DROP_NEWEST)
    for n in range(4):
        newest.push(ev(n))
    assert [e.data for e in newest.drain()] == [0, 1] and newest.dropped == 2


def test_registry_decorator_and_arg_helper() -> None:
    reg = HandlerRegistry()

    @reg.command(idempotent=True)
    def reboot(args: dict[str, Any]) -> Any:
        return "ok"

    spec = reg.lookup("reboot")
    assert spec is not None and spec.idempotent and spec.handler is reboot
    assert "reboot" in reg and reg.names() == ["reboot"]
    assert arg({"n": 1}, "n", int) == 1
    assert arg({}, "n", int, 5) == 5
    with pytest.raises(BadArgs, match="n must be int, got bool"):
        arg({"n": True}, "n", int)
    with pytest.raises(BadArgs, match="missing"):
        arg({}, "n", int)


def test_settings_hold_the_contract() -> None:
    settings = AgentSettings("dev-a", username="dev-a", password="pw")
    assert (settings.keepalive, settings.session_expiry) == (25, WEEK)
    assert settings.effective_client_id == "dev-a"
    v5 = connect_args(settings)
    assert v5["clean_start"] is False
    assert v5["properties"].SessionExpiryInterval == WEEK
    v311 = connect_args(AgentSettings("dev-a", mqtt_version=MqttVersion.V311))
    assert "clean_start" not in v311 and "properties" not in v311
    for bad in (
        {"keepalive": 26},
        {"session_expiry": WEEK - 1},
        {"device_id": "a/b"},
        {"port": 0},
        {"prefix": "a/#"},
    ):
        with pytest.raises(ConfigError):
            AgentSettings(**{"device_id": "dev-a", **bad})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker", ("broker", 1883)),
        ("broker:8883", ("broker", 8883)),
        ("[::1]:18830", ("::1", 18830)),
        ("[::1]", ("::1", 1883)),
    ],
)
def test_parse_broker(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["", ":1883", "host:port", "host:70000", "[::1"])
def test_parse_broker_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_broker(text)
