"""Provision and revoke device credentials over ``$CONTROL/dynamic-security/v1``, live.

A blocking client on its own paho network thread: provisioning is rare, so async callers run it
with ``asyncio.to_thread``. Each request carries correlation data and waits for its own response.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mosquitto import dynsec
from tether.netutil import set_tcp_nodelay
from tether.protocol.errors import TetherError

log = logging.getLogger(__name__)


class DynsecError(TetherError, RuntimeError):
    """The plugin refused a command (``errors`` maps command name to the plugin's message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{command}: {error}" for command, error in errors))

    @property
    def already_exists(self) -> bool:
        return any("already exists" in error for _, error in self.errors)

    @property
    def not_found(self) -> bool:
        return any("not found" in error for _, error in self.errors)


class DynsecAdmin:
    """``with DynsecAdmin(host, port, user, password) as admin: admin.create_device(...)``."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        *,
        prefix: str = "tether",
        timeout: float = 10.0,
    ) -> None:
        self.prefix = prefix
        self.timeout = timeout
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._subscribed = threading.Event()
        self._pending: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._lock = threading.Lock()
        self._host, self._port = host, port
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{username}-dynsec-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.on_socket_open = lambda _c, _u, sock: set_tcp_nodelay(sock)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def __enter__(self) -> DynsecAdmin:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(self.timeout) or self._connect_error:
            self.close()
            raise ConnectionError(
                f"dynsec admin could not connect: {self._connect_error or 'timeout'}"
            )
        self._client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
        if not self._subscribed.wait(self.timeout):
            self.close()
            raise ConnectionError("dynsec admin could not subscribe to the response topic")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def execute(self, commands: list[dynsec.Command]) -> list[dict[str, Any]]:
        """Send commands in one request; return the responses or raise :class:`DynsecError`."""
        tag = uuid.uuid4().hex
        tagged = [
            {**command, "correlationData": f"{tag}:{i}"} for i, command in enumerate(commands)
        ]
        done = threading.Event()
        responses: list[dict[str, Any]] = []
        with self._lock:
            self._pending[tag] = (done, responses)
        try:
            info = self._client.publish(
                dynsec.CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise ConnectionError(f"dynsec publish failed: {mqtt.error_string(info.rc)}")
            if not done.wait(self.timeout):
                raise TimeoutError("no answer from the dynamic security plugin")
        finally:
            with self._lock:
                self._pending.pop(tag, None)
        errors = [(r.get("command", "?"), r["error"]) for r in responses if r.get("error")]
        if errors:
            raise DynsecError(errors)
        return responses

    def create_device(self, device_id: str, username: str, password: str) -> None:
        self.execute(dynsec.create_device_commands(self.prefix, device_id, username, password))

    def set_password(self, username: str, password: str) -> None:
        """A new password; the broker disconnects a client logged in with the old one."""
        self.execute([{"command": "setClientPassword", "username": username, "password": password}])

    def delete_device(self, device_id: str, username: str) -> None:
        self.execute(dynsec.delete_device_commands(device_id, username))

    # paho callbacks (network thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
        self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        if not any(r.is_failure for r in reasons):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable dynsec response: %r", message.payload[:200])
            return
        by_tag: dict[str, list[dict[str, Any]]] = {}
        for response in responses:
            tag = str(response.get("correlationData", "")).split(":", 1)[0]
            by_tag.setdefault(tag, []).append(response)
        with self._lock:
            for tag, items in by_tag.items():
                waiter = self._pending.get(tag)
                if waiter:
                    waiter[1].extend(items)
                    waiter[0].set()
