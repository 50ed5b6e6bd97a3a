"""Real Mosquitto brokers for tests: a local process, or a container when a Docker engine answers.

Both run the project's own rendered config (dynamic security, ACLs, persistence) on a free port.
Set ``TETHER_TEST_BROKER=local`` or ``=docker`` to force one; by default Docker is used only when
its engine answers a ping.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from broker_bridge.dynsec_admin import DynsecAdmin
from mosquitto.config import BrokerSettings, render_broker_files
from mosquitto.process import MosquittoProcess, free_port, wait_for_port
from tests.support.mqtt import ProbeClient
from tether.credentials import new_secret

PREFIX = "tether"
CONTAINER_IMAGE = "eclipse-mosquitto:2"


@dataclass(frozen=True)
class Credentials:
    device_id: str
    username: str
    password: str


class Broker(Protocol):
    host: str
    admin_username: str
    admin_password: str

    @property
    def port(self) -> int: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...


class BrokerHandle:
    """What a test needs from a running broker: its address, admin rights and a restart."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    @property
    def host(self) -> str:
        return self._broker.host

    @property
    def port(self) -> int:
        return self._broker.port

    @property
    def admin_username(self) -> str:
        return self._broker.admin_username

    @property
    def admin_password(self) -> str:
        return self._broker.admin_password

    def admin(self) -> DynsecAdmin:
        return DynsecAdmin(
            self.host, self.port, self.admin_username, self.admin_password, prefix=PREFIX
        )

    def device_client(
        self, creds: Credentials, *, password: str | None = None, **options: Any
    ) -> ProbeClient:
        """A client (not yet connected) logged in as the device: client id = username."""
        return ProbeClient(
            self.host,
            self.port,
            client_id=creds.username,
            username=creds.username,
            password=creds.password if password is None else password,
            **options,
        )

    def provision(self, *device_ids: str) -> list[Credentials]:
        created = []
        with self.admin() as admin:
            for device_id in device_ids:
                password = new_secret()
                admin.create_device(device_id, device_id, password)
                created.append(Credentials(device_id, device_id, password))
        return created

    def restart(self) -> None:
        self._broker.stop()
        self._broker.start()

    def kill(self) -> None:
        self._broker.kill()

    def start(self) -> None:
        self._broker.start()

    def stop(self) -> None:
        self._broker.stop()


class LocalBroker:
    """The local ``mosquitto`` binary, stopped by its pid."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.admin_username = "tether-bridge"
        self.admin_password = new_secret()
        self._process = MosquittoProcess(
            BrokerSettings(port=free_port(), data_dir=data_dir, **overrides),
            self.admin_username,
            self.admin_password,
        )

    @property
    def port(self) -> int:
        return self._process.settings.port

    @property
    def log(self) -> str:
        return self._process.log_tail(50)

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._process.stop()

    def kill(self) -> None:
        self._process.kill()


class DockerBroker:
    """``eclipse-mosquitto:2`` through testcontainers, with the same rendered config mounted."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        self.admin_username = "tether-bridge"
        self.admin_password = new_secret()
        self._data_dir = data_dir
        self._settings = BrokerSettings(
            port=1883,
            data_dir=Path("/mosquitto/data"),
            bind_address="0.0.0.0",
            dynsec_plugin="/usr/lib/mosquitto_dynamic_security.so",
            user="mosquitto",
            **overrides,
        )
        self._container: Any = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    def start(self) -> None:
        from testcontainers.core.container import DockerContainer

        self._data_dir.mkdir(parents=True, exist_ok=True)
        # Render into the host folder with the container's paths, then mount it where they point.
        host_settings = BrokerSettings(**{**self._settings.__dict__, "data_dir": self._data_dir})
        render_broker_files(host_settings, self.admin_username, self.admin_password)
        text = (self._data_dir / "mosquitto.conf").read_text()
        (self._data_dir / "mosquitto.conf").write_text(
            text.replace(str(self._data_dir), "/mosquitto/data")
        )
        os.chmod(self._data_dir, 0o777)
        for child in self._data_dir.iterdir():
            os.chmod(child, 0o666)
        if self._container is None:
            self._container = (
                DockerContainer(CONTAINER_IMAGE)
                .with_volume_mapping(str(self._data_dir), "/mosquitto/data", "rw")
                .with_exposed_ports(1883)
                .with_command("mosquitto -c /mosquitto/data/mosquitto.conf")
            )
            self._container.start()
        else:
            self._container.get_wrapped_container().start()
        self._port = int(self._container.get_exposed_port(1883))
        wait_for_port(self.host, self._port, time.monotonic() + 30)

    def stop(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().stop(timeout=10)

    def kill(self) -> None:
        if self._container is not None:
            self._container.get_wrapped_container().kill()

    def remove(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None


def docker_engine_available() -> bool:
    choice = os.environ.get("TETHER_TEST_BROKER", "").lower()
    if choice in ("local", "docker"):
        return choice == "docker"
    # Ask the CLI rather than the SDK: the SDK leaks a socket when no engine answers.
    docker_cli = shutil.which("docker")
    if docker_cli is None:
        return False
    try:
        probe = subprocess.run(
            [docker_cli, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0
