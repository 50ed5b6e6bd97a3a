"""An in-process bridge over a real broker and real SQLite files, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from broker_bridge.bridge import Bridge, BridgeSettings
from broker_bridge.mqtt_session import SessionSettings
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store.queries import get_command, get_device
from broker_bridge.store.records import Record
from tests.support.brokers import BrokerHandle, Credentials


def bridge_settings(
    broker: BrokerHandle, data_dir: Path, policy: DeliveryPolicy | None = None, **kw: Any
) -> BridgeSettings:
    return BridgeSettings(
        data_dir=data_dir,
        mqtt=SessionSettings(
            broker.host, broker.port, broker.admin_username, broker.admin_password
        ),
        policy=policy or DeliveryPolicy(),
        shards=kw.pop("shards", 4),
        groups=kw.pop("groups", 1),
        **kw,
    )


class BridgeHandle:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def provision(self, *device_ids: str) -> list[Credentials]:
        out = []
        for device_id in device_ids:
            record, password = self.bridge.provisioner.provision(device_id)
            out.append(Credentials(device_id, record["username"], password))
        return out

    def command(self, command_id: str) -> Record:
        store = self.bridge.store
        for shard in range(store.shard_count):
            found = store.read(shard, lambda c: get_command(c, command_id)).result()
            if found is not None:
                return found
        raise KeyError(command_id)

    def device(self, device_id: str) -> Record:
        store = self.bridge.store
        found = store.read(store.shard_of(device_id), lambda c: get_device(c, device_id)).result()
        if found is None:
            raise KeyError(device_id)
        return found

    def state(self, command_id: str) -> str:
        return str(self.command(command_id)["state"])
