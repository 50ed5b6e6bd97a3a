from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import (
    MAX_ARGS_BYTES,
    AckMessage,
    AckStatus,
    CommandMessage,
    CommandState,
    DeviceEventMessage,
    ProtocolError,
    StatusMessage,
    decode_ack,
    decode_command,
    decode_event,
    decode_status,
    format_time,
    new_command_id,
    parse_time,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | (st.floats(allow_nan=False, allow_infinity=False))
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
times = st.datetimes(timezones=st.just(__import__("datetime").UTC)).map(format_time)
names = st.text(min_size=1, max_size=30).filter(str.isprintable)
command_ids = st.builds(lambda _: new_command_id(), st.integers())


@given(command_ids, names, times, json_objects, st.none() | times)
def test_command_round_trip(
    cid: str, name: str, issued: str, args: dict[str, Any], exp: str | None
) -> None:
    message = CommandMessage(cid, name, issued, args, exp)
    assert decode_command(message.encode()) == message


@given(
    command_ids,
    st.sampled_from(AckStatus),
    times,
    json_values,
    st.none() | st.text(min_size=1, max_size=50),
)
def test_ack_round_trip(
    cid: str, status: AckStatus, at: str, result: Any, error: str | None
) -> None:
    if status is AckStatus.FAILED and error is None:
        error = "boom"
    message = AckMessage(cid, status, at, result if status is AckStatus.SUCCEEDED else None, error)
    assert decode_ack(message.encode()) == message


@given(names, times, json_values)
def test_event_round_trip(name: str, at: str, data: Any) -> None:
    message = DeviceEventMessage(name, at, data)
    assert decode_event(message.encode()) == message


@given(st.booleans(), st.none() | times, st.none() | st.text(max_size=20))
def test_status_round_trip(online: bool, at: str | None, agent: str | None) -> None:
    message = StatusMessage(online, at, agent)
    assert decode_status(message.encode()) == message


def test_last_will_decodes() -> None:
    assert decode_status(b'{"online": false}') == StatusMessage(False)


def good_command(**changes: Any) -> bytes:
    obj = {
        "id": new_command_id(),
        "name": "reboot",
        "args": {},
        "issued_at": "2026-01-01T00:00:00Z",
        "expires_at": None,
    }
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (b"\xff\xfe", None, "UTF-8"),
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b'{"x": NaN}', None, "not valid JSON"),
        (good_command(id=...), "id", "missing"),
        (good_command(id=17), "id", "must be str"),
        (good_command(id="not-a-uuid"), "id", "UUIDv7"),
        (good_command(name=""), "name", "non-empty"),
        (good_command(name=5), "name", "non-empty"),
        (good_command(args=[1]), "args", "JSON object"),
        (good_command(args={"blob": "x" * MAX_ARGS_BYTES}), "args", "limit"),
        (good_command(issued_at="yesterday"), "issued_at", "RFC 3339"),
        (good_command(issued_at="2026-01-01T00:00:00"), "issued_at", "UTC offset"),
        (good_command(expires_at=3), "expires_at", "RFC 3339"),
    ],
)
def test_malformed_commands_are_named_precisely(
    raw: bytes, field: str | None, fragment: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_command(raw)
    assert caught.value.field == field
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"status": "received", "at": "2026-01-01T00:00:00Z"}, "id"),
        ({"id": "ID", "status": "done", "at": "2026-01-01T00:00:00Z"}, "status"),
        ({"id": "ID", "status": True, "at": "2026-01-01T00:00:00Z"}, "status"),
        ({"id": "ID", "status": "received"}, "at"),
        ({"id": "ID", "status": "failed", "at": "2026-01-01T00:00:00Z"}, "error"),
        ({"id": "ID", "status": "failed", "error": 5, "at": "2026-01-01T00:00:00Z"}, "error"),
    ],
)
def test_malformed_acks_are_named_precisely(obj: dict[str, Any], field: str) -> None:
    raw = json.dumps(obj).replace('"ID"', json.dumps(new_command_id())).encode()
    with pytest.raises(ProtocolError) as caught:
        decode_ack(raw)
    assert caught.value.field == field


def test_status_online_must_be_a_boolean() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_status(b'{"online": 1}')
    assert caught.value.field == "online"


def test_ack_status_maps_to_command_state() -> None:
    assert AckStatus.RECEIVED.state is CommandState.DELIVERED
    assert not AckStatus.RECEIVED.is_final
    for status in set(AckStatus) - {AckStatus.RECEIVED}:
        assert status.is_final
        assert status.state.is_terminal


def test_times_are_utc_and_sortable() -> None:
    a = parse_time("2026-01-01T01:00:00+01:00")
    assert format_time(a) == "2026-01-01T00:00:00.000000Z"
    with pytest.raises(ProtocolError):
        parse_time("2026-01-01")


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity"])
def test_numbers_json_cannot_carry_are_refused(number: str) -> None:
    head = f'{{"id": "{new_command_id()}", "status": "succeeded", "at": "2026-01-01T00:00:00Z"'
    raw = f'{head}, "result": {number}}}'
    with pytest.raises(ProtocolError, match="JSON"):
        decode_ack(raw.encode())


@pytest.mark.parametrize("name", ["a\x00b", "line\nbreak", "\x7f", "\x85", "\ud800", "x" * 129])
def test_command_names_refuse_control_characters(name: str) -> None:
    with pytest.raises(ProtocolError):
        decode_command(good_command(name=name))


def test_command_names_may_be_any_other_text() -> None:
    assert decode_command(good_command(name="réglage ✓ 7")).name == "réglage ✓ 7"
