"""The options only the command line has: where the data lives, how to reach a stack, what to send.

The services' own settings (``BrokerSettings``, ``BridgeSettings``, ``DeliveryPolicy``,
``SessionSettings``, ``GatewaySettings``, ``AgentSettings``, ``TlsSettings``, ``SimOptions``)
declare their flags on their fields; these dataclasses do the same for what no service holds,
so every flag of ``tether`` comes from one dataclass field and its default is written there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mosquitto.config import DEFAULT_PORT
from tether.settings import setting
from ui_gateway.settings import GatewaySettings

DEFAULT_WAIT_TIMEOUT = 330.0  # the execution timeout (300 s) and some slack
_GATEWAY = GatewaySettings()


@dataclass(frozen=True, slots=True)
class Verbosity:
    verbose: bool = setting(False, short="-v", help="debug logging")


@dataclass(frozen=True, slots=True)
class DataDirs:
    data_dir: Path = setting(
        Path(".tether"),
        help="the stack's state: broker files in mosquitto/, the command store in store/",
    )
    broker_dir: Path | None = setting(
        None,
        default_text="DATA_DIR/mosquitto",
        help="the broker's config, persistence and credentials",
    )

    @property
    def broker(self) -> Path:
        return (self.broker_dir or self.data_dir / "mosquitto").resolve()


@dataclass(frozen=True, slots=True)
class BridgeLogin:
    """How the bridge reaches the broker; the port is the broker's ``--mqtt-port``."""

    mqtt_host: str = setting("127.0.0.1", help="the broker's host")
    mqtt_username: str | None = setting(
        None,
        default_text="from the broker directory's bridge-credentials.json",
        help="the bridge's broker login",
    )
    mqtt_password: str | None = setting(
        None,
        default_text="from bridge-credentials.json",
        help="the bridge's broker password; prefer the variable",
    )


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    tokens_file: Path | None = setting(
        None,
        help='JSON {"tokens": [{"token", "role", "name"}]}; TETHER_ADMIN_TOKEN adds an admin token',
    )


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """How ``tether send``, ``status`` and ``provision`` reach a running stack."""

    url: str = setting(f"http://{_GATEWAY.host}:{_GATEWAY.port}", help="the stack's HTTP address")
    token: str | None = setting(None, help="bearer token; prefer the variable")


@dataclass(frozen=True, slots=True)
class SendOptions:
    args: str | None = setting(None, env="SEND_ARGS", help="JSON object of arguments")
    ttl: float | None = setting(
        None,
        env="SEND_TTL",
        default_text="the stack's, none unless set",
        help="seconds before an undelivered command expires",
    )
    wait: bool = setting(
        False,
        env="SEND_WAIT",
        help="follow it to a terminal state; exit 0 only on success, 3 when --timeout "
        f"(default {DEFAULT_WAIT_TIMEOUT:g} s) runs out first",
    )
    timeout: float = setting(
        DEFAULT_WAIT_TIMEOUT,
        env="SEND_TIMEOUT",
        help="with --wait, give up after this many seconds",
    )


@dataclass(frozen=True, slots=True)
class ProvisionOptions:
    count: int = setting(
        0,
        env="PROVISION_COUNT",
        help="also N numbered ids: ID_PREFIX00001, ID_PREFIX00002, ...",
    )
    id_prefix: str = setting("sim-", env="SIM_ID_PREFIX", help="prefix of the numbered device ids")
    out: Path | None = setting(
        None,
        env="SIM_CREDENTIALS",
        required=True,
        help="credentials file (JSON, 0600) for tether simulate",
    )
    rotate: bool = setting(
        False,
        env="PROVISION_ROTATE",
        help="give devices that exist, but whose password is not in --out, a new password "
        "(a device still using the old one is disconnected)",
    )


@dataclass(frozen=True, slots=True)
class Connection:
    """How a device or a simulated fleet reaches the broker, beyond ``AgentSettings``."""

    broker: str | None = setting(
        None,
        default_text=f"TETHER_MQTT_HOST:TETHER_MQTT_PORT or 127.0.0.1:{DEFAULT_PORT}",
        help="the broker as host:port",
    )
    tls: bool = setting(False, help="connect over TLS")


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    handlers: list[str] = setting(
        env="DEVICE_HANDLERS",
        metavar="MODULE:ATTR",
        default_factory=list,
        help="extra handlers: a HandlerRegistry or a function taking the agent; repeatable "
        "(the variable: comma-separated)",
    )
    no_demo: bool = setting(
        False,
        env="DEVICE_NO_DEMO",
        help="leave out the demo commands (echo, sleep, fail, set_config, get_config, reboot)",
    )


@dataclass(frozen=True, slots=True)
class SimLogin:
    credentials: Path | None = setting(
        None,
        env="SIM_CREDENTIALS",
        help="JSON or CSV of id/username/password; with --provision, where to write the new ones",
    )
    provision: bool = setting(
        False,
        env="SIM_PROVISION",
        help="create the devices first (named ID_PREFIX00001...) with the broker's admin login",
    )
    admin_username: str | None = setting(
        None,
        default_text="the broker dir's bridge-credentials.json",
        help="dynamic-security admin",
    )
    admin_password: str | None = setting(
        None,
        default_text="the broker dir's bridge-credentials.json",
        help="dynamic-security admin's password; prefer the variable",
    )


@dataclass(frozen=True, slots=True)
class SimRun:
    duration: float = setting(
        0.0,
        env="SIM_DURATION",
        default_text="0: until SIGINT/SIGTERM",
        help="stop after this many seconds",
    )
