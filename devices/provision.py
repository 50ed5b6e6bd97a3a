"""Credentials for simulated fleets: read and write credential files.

A credentials file is JSON (a list of ``{"id" | "device_id", "username", "password"}``, or an
object with such a list under ``"devices"``; ``POST /api/devices`` answers in that shape) or CSV
with a header naming the same columns. Files this module writes are JSON, mode 0600. Creating the
devices on the broker is broker administration: ``tether_cli.dynsec_fleet`` does it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.errors import ConfigError
from tether.protocol import ProtocolError, validate_device_id


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
