"""Render Tether's Mosquitto configuration for a port and a data directory.

``render_broker_files`` writes ``mosquitto.conf`` and, on first use only, the dynamic security
file holding the bridge's admin client, so restarting over the same data directory keeps every
provisioned device.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mosquitto.dynsec import initial_dynsec_config
from tether.credentials import new_secret
from tether.protocol.errors import TetherError
from tether.settings import setting

DEFAULT_PORT = 18830  # clear of a system broker on 1883
DEFAULT_MAX_PACKET_SIZE = 128 * 1024  # args ≤ 64 KiB encoded, plus the command envelope
# Per client. Devices never get near it (the bridge refuses beyond 1000 pending per device); the
# bridge's own session may fall far behind under overload, and a full queue drops acks.
DEFAULT_MAX_QUEUED_MESSAGES = 100_000
DYNSEC_FILE_NAME = "dynamic-security.json"
BRIDGE_SECRET_FILE_NAME = "bridge-credentials.json"
DEFAULT_BRIDGE_USERNAME = "tether-bridge"
CONF_FILE_NAME = "mosquitto.conf"

_PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",  # the eclipse-mosquitto image
    "/usr/local/lib/mosquitto_dynamic_security.so",
)


class BrokerConfigError(TetherError, RuntimeError):
    """The broker cannot be configured here (plugin missing, data directory unusable)."""


def find_dynsec_plugin() -> str:
    for pattern in _PLUGIN_CANDIDATES:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    raise BrokerConfigError(
        "Mosquitto's dynamic security plugin (mosquitto_dynamic_security.so) was not found; "
        "install Debian's 'mosquitto' package (apt-get install mosquitto) or use compose.yaml"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSettings:
    port: int = setting(
        DEFAULT_PORT, flag="--mqtt-port", help="the broker's port (clear of a broker on 1883)"
    )
    data_dir: Path
    bind_address: str = setting(
        "127.0.0.1", flag="--mqtt-bind", help="the address the broker listens on"
    )
    dynsec_plugin: str | None = setting(
        None,
        default_text="found here",
        help="path of mosquitto_dynamic_security.so as the broker sees it",
    )
    user: str | None = setting(
        None,
        flag="--broker-user",
        default_text="the data dir's owner",
        help="the user Mosquitto drops to when started as root",
    )
    max_packet_size: int = DEFAULT_MAX_PACKET_SIZE
    max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES
    persistent_client_expiration: str = "30d"
    autosave_interval: int = 5
    sys_interval: int = 2
    log_dest: str = "stderr"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise BrokerConfigError(f"MQTT port {self.port} is not in 1..65535")
        if self.max_queued_messages <= 1000:
            raise BrokerConfigError("max_queued_messages must stay above the pending limit 1000")

    @property
    def conf_path(self) -> Path:
        return self.data_dir / CONF_FILE_NAME

    @property
    def dynsec_path(self) -> Path:
        return self.data_dir / DYNSEC_FILE_NAME


def render_config(settings: BrokerSettings) -> str:
    """The text of ``mosquitto.conf`` for these settings (pure apart from locating the plugin)."""
    template = resources.files("mosquitto").joinpath("tether.conf.template").read_text()
    user = settings.user if settings.user is not None else _owner_of(settings.data_dir)
    data_dir = str(settings.data_dir).rstrip("/")
    return string.Template(template).substitute(
        user_line=f"user {user}" if user else "# user: left to Mosquitto's default",
        port=settings.port,
        bind_address=settings.bind_address,
        dynsec_plugin=settings.dynsec_plugin or find_dynsec_plugin(),
        dynsec_file=f"{data_dir}/{DYNSEC_FILE_NAME}",
        max_packet_size=settings.max_packet_size,
        data_dir=data_dir,
        autosave_interval=settings.autosave_interval,
        max_queued_messages=settings.max_queued_messages,
        persistent_client_expiration=settings.persistent_client_expiration,
        sys_interval=settings.sys_interval,
        log_dest=settings.log_dest,
    )


def _owner_of(path: Path) -> str:
    try:
        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (KeyError, FileNotFoundError):
        return ""


def prepare_data_dir(data_dir: Path) -> None:
    """Create the directory if needed and prove it is writable, or raise a clear error."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise BrokerConfigError(f"data directory {data_dir} is not writable: {exc}") from exc


def render_broker_files(settings: BrokerSettings, admin_username: str, admin_password: str) -> Path:
    """Write the config into ``settings.data_dir``; create the dynsec file only if it is missing.

    Returns the path of ``mosquitto.conf``. Raises :class:`BrokerConfigError` if the directory
    cannot be created or written.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise BrokerConfigError(
            f"data directory {settings.data_dir} is not writable: {exc}"
        ) from exc
    settings.conf_path.write_text(render_config(settings))
    if not settings.dynsec_path.exists():
        document = initial_dynsec_config(admin_username, admin_password)
        tmp = settings.dynsec_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(document, indent=1))
        tmp.chmod(0o600)
        os.replace(tmp, settings.dynsec_path)
    return settings.conf_path


@dataclass(frozen=True, slots=True)
class BridgeCredentials:
    username: str
    password: str


def load_or_create_bridge_credentials(
    data_dir: Path, username: str = DEFAULT_BRIDGE_USERNAME
) -> BridgeCredentials:
    """The bridge's broker login, generated on first use and kept (mode 0600) in the data dir.

    Kept because the dynamic security file stores only its hash: a restarted stack must log in
    with the same password.
    """
    path = data_dir / BRIDGE_SECRET_FILE_NAME
    if path.exists():
        stored = json.loads(path.read_text())
        return BridgeCredentials(stored["username"], stored["password"])
    prepare_data_dir(data_dir)
    creds = BridgeCredentials(username, new_secret())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"username": creds.username, "password": creds.password}, out)
    os.replace(tmp, path)
    return creds
