from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import (
    Channel,
    CommandIdGenerator,
    ProtocolError,
    Topics,
    is_valid_command_id,
    is_valid_device_id,
    validate_device_id,
)

device_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/b",
        "+",
        "#",
        "dev+",
        "dev#",
        "$SYS",
        "a b",
        "tab\t",
        "nul\x00",
        "-lead",
        "x" * 65,
        "é",
        "a\nb",
        7,
        None,
    ],
)
def test_bad_device_ids_are_refused(bad: object) -> None:
    assert not is_valid_device_id(bad)
    with pytest.raises(ProtocolError) as caught:
        validate_device_id(bad)
    assert caught.value.what == "device id"


def test_long_device_id_error_is_truncated() -> None:
    with pytest.raises(ProtocolError) as caught:
        validate_device_id("x" * 10_000)
    assert len(str(caught.value)) < 300


@given(device_ids)
def test_topics_round_trip(device_id: str) -> None:
    topics = Topics("fleet/site-1")
    for channel in Channel:
        ref = topics.parse(topics.topic(device_id, channel))
        assert (ref.device_id, ref.channel) == (device_id, channel)


@pytest.mark.parametrize(
    "topic",
    [
        "other/dev/cmd",
        "tether/dev",
        "tether/dev/cmd/extra",
        "tether/+/ack",
        "tether/#",
        "tether//ack",
        "tether/dev/reboot",
        "tether/$x/ack",
    ],
)
def test_parse_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(ProtocolError):
        Topics().parse(topic)


@pytest.mark.parametrize("prefix", ["", "a//b", "$SYS", "a/+", "a/#", " a", "/a"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ProtocolError):
        Topics(prefix)


def test_wildcard_subscription() -> None:
    assert Topics().wildcard(Channel.ACK) == "tether/+/ack"


def test_command_ids_are_uuid7_and_strictly_increasing_within_a_millisecond() -> None:
    generate = CommandIdGenerator(clock_ms=lambda: 1_700_000_000_000)
    ids = [generate() for _ in range(10_000)]  # overflows the 12-bit counter: carries into time
    assert all(is_valid_command_id(i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_command_ids_stay_ordered_when_the_clock_steps_back() -> None:
    ticks = iter([2_000, 2_000, 1_000, 1_000, 3_000])
    generate = CommandIdGenerator(clock_ms=lambda: next(ticks))
    ids = [generate() for _ in range(5)]
    assert ids == sorted(ids)
    assert int(ids[0][:8] + ids[0][9:13], 16) == 2_000
