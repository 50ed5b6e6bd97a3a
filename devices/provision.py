"""Credentials for simulated fleets: read and write credential files, create devices in bulk.

A credentials file is JSON (a list of ``{"id" | "device_id", "username", "password"}``, or an
object with such a list under ``"devices"``; ``POST /api/devices`` answers in that shape) or CSV
with a header naming the same columns. Files this module writes are JSON, mode 0600.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.errors import ConfigError
from mosquitto import dynsec
from mosquitto.config import BRIDGE_SECRET_FILE_NAME
from tether.credentials import new_secret
from tether.protocol import DEFAULT_PREFIX, ProtocolError, validate_device_id

log = logging.getLogger(__name__)

BATCH_DEVICES = 80  # two dynsec commands per device, ~1 KiB: far below the 128 KiB packet cap


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    device_id: str
    username: str
    password: str


def sim_ids(count: int, prefix: str = "sim-") -> list[str]:
    """``sim-00001`` … : zero-padded to at least five digits so they sort."""
    width = max(5, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def load_credentials(path: Path) -> list[DeviceCredentials]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc}") from None
    rows: list[Any]
    if path.suffix.lower() == ".csv" or not text.lstrip().startswith(("[", "{")):
        rows = list(csv.DictReader(io.StringIO(text)))
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"credentials file {path} is not JSON: {exc}") from None
        rows = data.get("devices", []) if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise ConfigError(f"credentials file {path}: expected a list of devices")
    return [_credentials(row, path, n) for n, row in enumerate(rows, 1)]


def _credentials(row: Any, path: Path, n: int) -> DeviceCredentials:
    if not isinstance(row, dict):
        raise ConfigError(f"{path}: entry {n} is not an object")
    device_id = row.get("device_id") or row.get("id")
    username = row.get("username") or device_id
    password = row.get("password")
    if not isinstance(password, str) or not password:
        raise ConfigError(f"{path}: entry {n} has no password")
    try:
        validate_device_id(device_id)
    except ProtocolError as exc:
        raise ConfigError(f"{path}: entry {n}: {exc}") from None
    return DeviceCredentials(str(device_id), str(username), password)


def save_credentials(path: Path, creds: Iterable[DeviceCredentials]) -> None:
    rows = [{"id": c.device_id, "username": c.username, "password": c.password} for c in creds]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(rows, out, indent=1)
    os.replace(tmp, path)


def bridge_admin_credentials(data_dir: Path) -> tuple[str, str]:
    """The admin login ``tether broker`` generated into its data directory."""
    path = data_dir / BRIDGE_SECRET_FILE_NAME
    try:
        stored = json.loads(path.read_text())
        return str(stored["username"]), str(stored["password"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"no admin credentials in {path}: {exc}") from None


Execute = Callable[[list[dynsec.Command]], list[dict[str, Any]]]


def provision(
    execute: Execute,
    device_ids: list[str],
    *,
    prefix: str = DEFAULT_PREFIX,
    batch: int = BATCH_DEVICES,
    progress: Callable[[int], None] | None = None,
) -> list[DeviceCredentials]:
    """Create every device (client id = username = device id) with a fresh password.

    Devices that already exist get a new password instead, so a fleet can be provisioned again.
    ``execute`` is :meth:`broker_bridge.dynsec_admin.DynsecAdmin.execute`.
    """
    existing = _existing_clients(execute)
    created = []
    commands: list[dynsec.Command] = []
    for n, device_id in enumerate(device_ids, 1):
        password = new_secret()
        if device_id in existing:
            commands.append(
                {"command": "setClientPassword", "username": device_id, "password": password}
            )
        else:
            commands += dynsec.create_device_commands(prefix, device_id, device_id, password)
        created.append(DeviceCredentials(device_id, device_id, password))
        if n % batch == 0 or n == len(device_ids):
            execute(commands)
            commands = []
            if progress is not None:
                progress(n)
    return created


def _existing_clients(execute: Execute) -> set[str]:
    responses = execute([{"command": "listClients", "verbose": False, "count": -1}])
    names: set[str] = set()
    for response in responses:
        for client in response.get("data", {}).get("clients", []):
            names.add(client if isinstance(client, str) else str(client.get("username")))
    return names
