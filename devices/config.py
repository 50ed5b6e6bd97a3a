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
from tether.settings import setting

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
    # None: the system's trust store
    ca_file: str | None = setting(
        None, flag="--tls-ca", default_text="the system's", help="CA file"
    )
    # a client certificate, with key_file
    cert_file: str | None = setting(None, flag="--tls-cert", help="client certificate")
    key_file: str | None = setting(None, flag="--tls-key", help="client key")
    insecure: bool = setting(
        False, flag="--tls-insecure", help="do not check the broker's host name (test rigs only)"
    )


@dataclass(frozen=True, slots=True)
class AgentSettings:
    device_id: str = setting(
        flag="--id", env="DEVICE_ID", metavar="DEVICE_ID", help="the device id"
    )
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    username: str | None = setting(
        None,
        env="DEVICE_USERNAME",
        default_text="the id",
        help="broker login, also the client id",
    )
    password: str | None = setting(
        None, env="DEVICE_PASSWORD", help="broker password; prefer the variable"
    )
    client_id: str | None = None  # default: the username (Tether's broker requires them equal)
    prefix: str = setting(DEFAULT_PREFIX, help="topic prefix")
    mqtt_version: MqttVersion = setting(MqttVersion.V5, help="MQTT protocol version")
    keepalive: int = setting(DEFAULT_KEEPALIVE, help="keepalive seconds, at most 25")
    session_expiry: int = WEEK  # seconds; MQTT 5 only (3.1.1 sessions live by broker config)
    tls: TlsSettings | None = None
    # None: in memory, so exactly-once ends with the process
    journal_path: Path | None = setting(
        None,
        flag="--journal",
        env="DEVICE_JOURNAL",
        default_text=".tether/devices/<id>.journal.sqlite3",
        help="the command journal, SQLite",
    )
    journal_keep: int = setting(
        DEFAULT_KEEP, flag="--journal-size", help="command ids the journal keeps"
    )
    event_buffer: int = setting(DEFAULT_EVENT_BUFFER, help="events kept while offline")
    event_policy: OverflowPolicy = setting(
        OverflowPolicy.DROP_OLDEST, help="what goes when the event buffer is full"
    )
    reconnect_base: float = 0.5
    reconnect_cap: float = setting(
        60.0, flag="--reconnect-max", help="cap of the reconnect backoff, seconds"
    )
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
