"""Create a simulated fleet's devices on the broker in bulk, over its dynamic-security API.

Broker administration, so it lives in the roof (``tether simulate --provision`` and the
benchmarks), not in ``devices/``: a device package never imports the broker's side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.errors import ConfigError
from devices.provision import DeviceCredentials
from mosquitto import dynsec
from mosquitto.config import BRIDGE_SECRET_FILE_NAME
from tether.credentials import new_secret
from tether.protocol import DEFAULT_PREFIX

BATCH_DEVICES = 80  # two dynsec commands per device, ~1 KiB: far below the 128 KiB packet cap


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
