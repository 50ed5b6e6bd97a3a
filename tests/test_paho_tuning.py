"""The shared property tables encode and decode exactly as the MQTT 5 specification says, and
only a program's entry point applies them: importing or using the libraries leaves paho alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import paho.mqtt
import pytest
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tether_cli.paho_tuning import CHECKED_VERSIONS, share_property_tables


def _publish_properties() -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/json"
    props.ResponseTopic = "t/d/ack"
    props.CorrelationData = b"\x01\x02"
    props.MessageExpiryInterval = 300
    props.UserProperty = [("k", "v")]
    return props


# MQTT 5, 2.2.2.2: each property is its identifier, then its value; the block is prefixed by
# its length as a variable byte integer. paho writes them in the order of its name table.
EXPECTED = (
    b"\x02\x00\x00\x01\x2c"  # Message Expiry Interval (2): four byte integer 300
    + b"\x03\x00\x10application/json"  # Content Type (3): UTF-8 string
    + b"\x08\x00\x07t/d/ack"  # Response Topic (8)
    + b"\x09\x00\x02\x01\x02"  # Correlation Data (9): binary data
    + b"\x26\x00\x01k\x00\x01v"  # User Property (38): string pair
)


def test_packing_is_unchanged_by_sharing_the_tables() -> None:
    assert share_property_tables() is (paho.mqtt.__version__ in CHECKED_VERSIONS)
    share_property_tables()  # idempotent
    packed = _publish_properties().pack()  # type: ignore[no-untyped-call]
    assert packed == bytes([len(EXPECTED)]) + EXPECTED


def test_unpacking_round_trips_and_instances_stay_separate() -> None:
    share_property_tables()
    packed = _publish_properties().pack()  # type: ignore[no-untyped-call]
    decoded, length = Properties(PacketTypes.PUBLISH).unpack(packed)  # type: ignore[no-untyped-call]
    assert length == len(packed)
    assert decoded.ContentType == "application/json"
    assert decoded.ResponseTopic == "t/d/ack"
    assert decoded.CorrelationData == b"\x01\x02"
    assert decoded.MessageExpiryInterval == 300
    assert decoded.UserProperty == [("k", "v")]
    other = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    assert not hasattr(other, "ContentType")  # values are per instance; only tables are shared
    assert other.names is decoded.names
    decoded.clear()
    assert decoded.pack() == b"\x00"
    assert decoded.names is other.names  # clear() keeps the tables


def test_properties_still_refuse_what_paho_refuses() -> None:
    share_property_tables()
    props = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
    with pytest.raises(MQTTException, match="does not apply"):
        props.ContentType = "x"  # not a PUBACK property
    with pytest.raises(MQTTException, match="must be one of"):
        props.NoSuchProperty = 1
    connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    with pytest.raises(MQTTException, match="range"):
        connect.ReceiveMaximum = 0
    connect.ReceiveMaximum = 10
    connect.UserProperty = ("a", "1")
    connect.UserProperty = ("b", "2")
    assert connect.UserProperty == [("a", "1"), ("b", "2")]  # type: ignore[attr-defined]


def run_fresh(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a new interpreter, whose paho nothing has touched yet."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )


def test_importing_and_using_the_libraries_leaves_paho_alone() -> None:
    result = run_fresh(
        """
        import devices, devices.agent, devices.session, devices.simulator
        import broker_bridge.bridge, broker_bridge.mqtt_session, ui_gateway.app
        from devices.config import AgentSettings
        from broker_bridge.mqtt_session import MqttSession, SessionSettings
        from tether_cli.paho_tuning import is_applied

        devices.session.build_client(AgentSettings("pump-7"))  # what the agent and simulator do
        MqttSession(SessionSettings("127.0.0.1", 1, "u", "p"), [], lambda message: None)
        print(is_applied())
        """
    )
    assert result.stdout.strip() == "False"


def test_the_tether_command_applies_it(tmp_path: Path) -> None:
    result = run_fresh(
        f"""
        import contextlib, io
        from tether_cli.main import main
        from tether_cli.paho_tuning import is_applied

        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["broker-config", "--data-dir", {str(tmp_path)!r}])
        print(code, is_applied())
        """
    )
    assert result.stdout.split() == ["0", str(paho.mqtt.__version__ in CHECKED_VERSIONS)]


def test_a_paho_version_it_was_not_checked_against_is_left_alone() -> None:
    result = run_fresh(
        """
        import logging
        from tether_cli.paho_tuning import is_applied, share_property_tables

        logging.basicConfig(level=logging.INFO)
        print(share_property_tables("9.9.9"), is_applied())
        """
    )
    assert result.stdout.split() == ["False", "False"]
    assert "paho-mqtt 9.9.9 is not one the property tuning was checked against" in result.stderr
