"""Helpers for device-agent tests: commands, an ack/status/event watcher, agents on the fixture."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.agent import DeviceAgent
from devices.config import AgentSettings
from devices.journal import Journal
from tests.support.brokers import PREFIX, BrokerHandle, Credentials
from tests.support.mqtt import TIMEOUT, ProbeClient
from tether.protocol import (
    AckMessage,
    CommandMessage,
    DeviceEventMessage,
    StatusMessage,
    decode_ack,
    decode_event,
    decode_status,
    new_command_id,
    utc_now,
)


def command(
    name: str,
    args: dict[str, Any] | None = None,
    *,
    command_id: str | None = None,
    expires_at: str | None = None,
) -> CommandMessage:
    return CommandMessage(command_id or new_command_id(), name, utc_now(), args or {}, expires_at)


def agent_for(
    broker: BrokerHandle,
    creds: Credentials,
    tmp_path: Path,
    journal: Journal | None = None,
    **overrides: Any,
) -> DeviceAgent:
    """An agent (not started) for provisioned credentials, with a journal under ``tmp_path``."""
    settings: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "username": creds.username,
        "password": creds.password,
        "journal_path": tmp_path / f"{creds.device_id}.journal.sqlite3",
        "reconnect_base": 0.05,
        "reconnect_cap": 0.5,
    }
    settings.update(overrides)
    return DeviceAgent(AgentSettings(creds.device_id, **settings), journal=journal)


class Watcher:
    """The bridge's view of one device: its acks, events and statuses, in arrival order."""

    def __init__(self, broker: BrokerHandle, device_id: str) -> None:
        self.device_id = device_id
        self.probe = ProbeClient(
            broker.host, broker.port, username=broker.admin_username, password=broker.admin_password
        ).connect_ok()
        self.acks: list[AckMessage] = []
        self.events: list[DeviceEventMessage] = []
        self.statuses: list[StatusMessage] = []
        self.status_retained: list[bool] = []
        for channel in ("ack", "evt", "status"):
            reasons = self.probe.subscribe(self.topic(channel))
            assert not any(r.is_failure for r in reasons)

    def topic(self, channel: str) -> str:
        return f"{PREFIX}/{self.device_id}/{channel}"

    def send(self, cmd: CommandMessage | bytes) -> None:
        payload = cmd.encode() if isinstance(cmd, CommandMessage) else cmd
        self.probe.publish(self.topic("cmd"), payload)

    def wait(
        self, condition: Callable[[Watcher], bool], timeout: float = TIMEOUT, what: str = ""
    ) -> None:
        """Take messages until ``condition(self)`` holds; fail at the deadline.

        The condition is checked again only when a message arrives: it must be about messages.
        """
        deadline = time.monotonic() + timeout
        while not condition(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"timed out waiting for {what or 'a condition'}; acks: {self.acks}"
                )
            try:
                message = self.probe.next_message(remaining)
            except queue.Empty:
                continue
            channel = message.topic.rsplit("/", 1)[1]
            if channel == "ack":
                self.acks.append(decode_ack(message.payload))
            elif channel == "evt":
                self.events.append(decode_event(message.payload))
            elif channel == "status":
                self.statuses.append(decode_status(message.payload))
                self.status_retained.append(bool(message.retain))

    def acks_for(self, command_id: str) -> list[AckMessage]:
        return [a for a in self.acks if a.id == command_id]

    def final(self, command_id: str, timeout: float = TIMEOUT) -> AckMessage:
        """Wait for the first final ack of ``command_id``."""
        self.wait(
            lambda w: any(a.status.is_final for a in w.acks_for(command_id)),
            timeout,
            f"a final ack of {command_id}",
        )
        return next(a for a in self.acks_for(command_id) if a.status.is_final)

    def finals(self, command_id: str) -> list[AckMessage]:
        return [a for a in self.acks_for(command_id) if a.status.is_final]

    def wait_online(self, online: bool = True, count: int = 1, timeout: float = TIMEOUT) -> None:
        self.wait(
            lambda w: sum(s.online == online for s in w.statuses) >= count,
            timeout,
            f"status online={online} x{count}",
        )

    def close(self) -> None:
        self.probe.disconnect()


class DemoAgent:
    """A started agent with the demo handlers, for a device provisioned through the API:
    ``with DemoAgent(broker, api_client, "pump-1") as agent: ...``."""

    def __init__(self, broker: BrokerHandle, api: Any, device_id: str) -> None:
        from devices.demo import install

        creds = api.post("/api/devices", json={"id": device_id}).json()
        self.agent = DeviceAgent(
            AgentSettings(
                device_id=device_id,
                host=broker.host,
                port=broker.port,
                username=creds["username"],
                password=creds["password"],
            )
        )
        install(self.agent)

    def __enter__(self) -> DeviceAgent:
        self.agent.start()
        assert self.agent.wait_connected(10), "the demo agent did not connect"
        return self.agent

    def __exit__(self, *exc: object) -> None:
        self.agent.stop()
