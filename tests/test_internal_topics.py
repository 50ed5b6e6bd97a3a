"""The internal topics between gateways and workers: only the service login may use them, and
anything malformed on them is dropped with a count, never committed."""

from __future__ import annotations

import json
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.bridges import BridgeHandle
from tests.support.brokers import BrokerHandle
from tests.support.mqtt import ProbeClient
from tests.support.waiting import wait_until
from tether.protocol import new_command_id
from tether.protocol.internal import InternalTopics, Request, decode_answer
from tether.protocol.service import NewCommand

INTERNAL = InternalTopics("tether")


def _request_props(response_topic: str) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = response_topic
    props.CorrelationData = b"c-1"
    return props


def _send_request(device_id: str, command_id: str) -> bytes:
    command = NewCommand(command_id, device_id, "blink", {})
    return Request("send", device_id, time.time() + 30, command=command).encode()


def _service_client(broker: BrokerHandle) -> ProbeClient:
    return ProbeClient(
        broker.host,
        broker.port,
        username=broker.admin_username,
        password=broker.admin_password,
    ).connect_ok()


def test_a_device_login_can_neither_request_nor_listen(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    (creds,) = bridge.provision("pump-1")
    device = broker.device_client(creds).connect_ok()
    for topic in (INTERNAL.all_events, INTERNAL.all_owners, INTERNAL.response("gw-x")):
        (granted,) = device.subscribe(topic)
        assert granted.is_failure, f"a device may not read {topic}"
    forged_id = new_command_id()
    info = device.client.publish(
        INTERNAL.request(0),
        _send_request("pump-1", forged_id),
        qos=1,
        properties=_request_props(INTERNAL.response("gw-x")),
    )
    info.wait_for_publish(10)
    # The fence: a request from the service login, answered, comes after the forged one.
    service = _service_client(broker)
    service.subscribe(INTERNAL.response("gw-fence"))
    fence_id = new_command_id()
    service.client.publish(
        INTERNAL.request(0),
        _send_request("pump-1", fence_id),
        qos=1,
        properties=_request_props(INTERNAL.response("gw-fence")),
    )
    answer = decode_answer(bytes(service.next_message().payload))
    assert answer.ok and json.loads(answer.record_json)["id"] == fence_id
    assert bridge.bridge.stats["requests_send"] == 1
    try:
        bridge.command(forged_id)
    except KeyError:
        pass
    else:
        raise AssertionError("a device's forged request was committed")


def test_malformed_requests_are_dropped_and_counted(
    broker: BrokerHandle, bridge: BridgeHandle
) -> None:
    bridge.provision("pump-2")
    service = _service_client(broker)
    answers = INTERNAL.response("gw-bad")
    service.subscribe(answers)
    cases: list[tuple[bytes, Properties | None]] = [
        (b"not json", _request_props(answers)),
        (b"[]", _request_props(answers)),
        (json.dumps({"op": "explode", "device": "pump-2", "deadline": 1e12}).encode(),
         _request_props(answers)),
        (json.dumps({"op": "send", "device": "pump-2", "deadline": 1e12,
                     "command": {"id": "not-an-id", "name": "x", "args": {}}}).encode(),
         _request_props(answers)),
        (_send_request("pump-2", new_command_id()), None),  # no response topic
        # a response topic that is not a gateway's: the owner must not publish there
        (_send_request("pump-2", new_command_id()), _request_props("tether/pump-2/cmd")),
    ]  # fmt: skip
    for payload, props in cases:
        service.client.publish(INTERNAL.request(0), payload, qos=1, properties=props)
    wait_until(
        lambda: bridge.bridge.stats["malformed_requests"] == len(cases),
        what="every malformed request counted",
    )
    assert bridge.bridge.stats["requests_send"] == 0
    assert service.drain() == []  # nothing was answered
    commands = bridge.bridge.store.read(
        bridge.bridge.store.shard_of("pump-2"),
        lambda c: c.execute("SELECT count(*) FROM commands").fetchone()[0],
    ).result()
    assert commands == 0


def test_an_expired_request_is_refused_not_run(broker: BrokerHandle, bridge: BridgeHandle) -> None:
    bridge.provision("pump-3")
    service = _service_client(broker)
    answers = INTERNAL.response("gw-late")
    service.subscribe(answers)
    late_id = new_command_id()
    command = NewCommand(late_id, "pump-3", "blink", {})
    payload = Request("send", "pump-3", time.time() - 1, command=command).encode()
    service.client.publish(INTERNAL.request(0), payload, qos=1, properties=_request_props(answers))
    answer = decode_answer(bytes(service.next_message().payload))
    assert not answer.ok and answer.status == 503
    try:
        bridge.command(late_id)
    except KeyError:
        pass
    else:
        raise AssertionError("an expired request was committed")


def test_the_same_send_twice_is_one_command(broker: BrokerHandle, bridge: BridgeHandle) -> None:
    bridge.provision("pump-4")
    service = _service_client(broker)
    answers = INTERNAL.response("gw-twice")
    service.subscribe(answers)
    command_id = new_command_id()
    for _ in range(2):
        service.client.publish(
            INTERNAL.request(0),
            _send_request("pump-4", command_id),
            qos=1,
            properties=_request_props(answers),
        )
    first, second = (decode_answer(bytes(service.next_message().payload)) for _ in range(2))
    assert (first.ok, first.created) == (True, True)
    assert (second.ok, second.created) == (True, False)
    assert json.loads(second.record_json)["id"] == command_id
