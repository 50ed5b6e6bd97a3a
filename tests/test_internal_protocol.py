"""The internal topics' codecs (pure): requests refuse anything malformed with a ProtocolError,
answers keep the record's JSON as stored, event batches stay under the broker's packet limit."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import ProtocolError, new_command_id
from tether.protocol.internal import (
    EVENTS_MAX_BYTES,
    Answer,
    InternalTopics,
    Request,
    decode_answer,
    decode_events,
    decode_request,
    encode_events,
)
from tether.protocol.service import NewCommand, StoredEvent

TOPICS = InternalTopics("tether")


def test_a_send_request_round_trips() -> None:
    command = NewCommand(new_command_id(), "pump-1", "blink", {"n": 2}, 30.0, "k-1", "h" * 64)
    request = Request("send", "pump-1", 1e12, command=command)
    assert decode_request(request.encode()) == request


@given(st.binary(max_size=300))
def test_garbage_is_a_protocol_error_or_a_request(payload: bytes) -> None:
    try:
        request = decode_request(payload)
    except ProtocolError:
        return
    assert request.op in ("send", "cancel", "provision", "rotate", "revoke")


@given(
    st.dictionaries(
        st.sampled_from(["op", "device", "deadline", "command", "command_id", "x"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=70)),
    )
)
def test_objects_of_any_shape_never_crash_the_decoder(body: dict[str, object]) -> None:
    with contextlib.suppress(ProtocolError):  # anything else escaping is a bug
        decode_request(json.dumps(body).encode())


def test_an_answer_keeps_the_record_text() -> None:
    record = '{"id":"x","state":"queued","args":{"z":1,"a":2}}'
    answer = decode_answer(Answer(True, record, created=True).encode())
    assert (answer.ok, answer.record_json, answer.created) == (True, record, True)
    refused = decode_answer(Answer(False, code="queue_full", status=429, message="m").encode())
    assert (refused.ok, refused.code, refused.status) == (False, "queue_full", 429)


def _event(seq: int, size: int) -> StoredEvent:
    data = json.dumps({"id": f"c-{seq}", "pad": "x" * size})
    return StoredEvent(3, seq, "command", "pump-1", "2026-11-29T12:00:00.000Z", data)


@given(st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=40))
def test_event_batches_split_under_the_limit_in_order(sizes: list[int]) -> None:
    events = [_event(seq, size) for seq, size in enumerate(sizes, start=1)]
    messages = encode_events(events)
    assert all(len(m) <= EVENTS_MAX_BYTES for m in messages)
    decoded = [e for m in messages for e in decode_events(3, m)]
    assert decoded == events


def test_an_event_larger_than_the_limit_goes_alone() -> None:
    events = [_event(1, 10), _event(2, EVENTS_MAX_BYTES), _event(3, 10)]
    messages = encode_events(events)
    assert [len(decode_events(3, m)) for m in messages] == [1, 1, 1]


def test_topic_numbers() -> None:
    assert TOPICS.number_in(TOPICS.events(7), "events") == 7
    for bad in ("tether/_bridge/events/x", "tether/_bridge/events/", "tether/7/events/1"):
        try:
            TOPICS.number_in(bad, "events")
        except ProtocolError:
            continue
        raise AssertionError(bad)
