"""One settings object for a device agent, validated once, plus the broker address parser."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from paho.mqtt.enums import MQTTProtocolVersion

from devices.errors import ConfigError
from devices.events import DEFAULT_EVENT_BUFFER, OverflowPolicy
from devices.journal import DEFAULT_KEEP
from tether import __version__
from tether.protocol import DEFAULT_PREFIX, ProtocolError, Topics, validate_device_id
from tether.protocol.outcomes import FEATURE_CANCEL

WEEK = 7 * 24 * 3600
MAX_KEEPALIVE = 25  # the contract: devices use keepalive <= 25 s
DEFAULT_KEEPALIVE = 25
DEFAULT_PORT = 1883
AGENT_NAME = f"tether-device/{__version__}"


class MqttVersion(enum.StrEnum):
    V5 = "5"
    V311 = "3.1.1"

    @property
    def paho(self) -> MQTTProtocolVersion:
        return (
            MQTTProtocolVersion.MQTTv5 if self is MqttVersion.V5 else MQTTProtocolVersion.MQTTv311
        )


@dataclass(frozen=True, slots=True)
class TlsSettings:
    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None  # a client certificate, with key_file
    key_file: str | None = None
    insecure: bool = False  # skip the host name check (test rigs only)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    device_id: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None
    client_id: str | None = None  # default: the username (Tether's broker requires them equal)
    prefix: str = DEFAULT_PREFIX
    mqtt_version: MqttVersion = MqttVersion.V5
    keepalive: int = DEFAULT_KEEPALIVE
    session_expiry: int = WEEK  # seconds; MQTT 5 only (3.1.1 sessions live by broker config)
    tls: TlsSettings | None = None
    journal_path: Path | None = None  # None: in memory, so exactly-once ends with the process
    journal_keep: int = DEFAULT_KEEP
    event_buffer: int = DEFAULT_EVENT_BUFFER
    event_policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    reconnect_base: float = 0.5
    reconnect_cap: float = 60.0
    receive_maximum: int = 20  # MQTT 5: commands in flight to us, so the worker queue stays small
    queue_size: int = 1000
    connect_timeout: float = 10.0
    agent_name: str = AGENT_NAME
    # Advertised in the status: "cancel" = this agent honours cancel notices (devices.core).
    features: tuple[str, ...] = (FEATURE_CANCEL,)
    topics: Topics = field(init=False)

    def __post_init__(self) -> None:
        try:
            validate_device_id(self.device_id)
            object.__setattr__(self, "topics", Topics(self.prefix))
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
        if not 0 < self.port < 65536:
            raise ConfigError(f"broker port {self.port} is not in 1..65535")
        if not 1 <= self.keepalive <= MAX_KEEPALIVE:
            raise ConfigError(f"keepalive must be 1..{MAX_KEEPALIVE} s, got {self.keepalive}")
        if self.session_expiry < WEEK:
            raise ConfigError(f"session expiry must be at least 7 days ({WEEK} s)")
        if not 0 < self.reconnect_base <= self.reconnect_cap:
            raise ConfigError("reconnect delays need 0 < base <= cap")
        if not 1 <= self.receive_maximum <= 65535:
            raise ConfigError("receive maximum must be 1..65535")
        if self.queue_size <= self.receive_maximum:
            raise ConfigError("the worker queue must be larger than the receive maximum")
        if self.event_buffer < 0 or self.journal_keep < 1:
            raise ConfigError("event buffer must be >= 0 and journal size >= 1")
        if self.username is None and self.password is not None:
            raise ConfigError("a password needs a username")

    @property
    def effective_client_id(self) -> str:
        return self.client_id or self.username or self.device_id


def parse_broker(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` → ``(host, port)``."""
    text = address.strip()
    if not text:
        raise ConfigError("broker address is empty")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"broker address {address!r} is not [host]:port")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ConfigError(f"broker address {address!r} has no host")
    if not port_text:
        return host, default_port
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"broker port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"broker port {port} is not in 1..65535")
    return host, port
