"""Provision many devices through the REST API and keep their logins in a credentials file.

Devices already provisioned whose passwords are in the file are kept; devices provisioned but
missing from the file are provisioned anew (passwords are shown once, so this is the only way to
get one back); the rest are created. `tether simulate --credentials` reads the file (0600).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tether.protocol.errors import TetherError
from tether.protocol.paths import api_path


class ProvisioningError(TetherError, RuntimeError):
    """A simulated fleet could not be provisioned through the broker."""


def numbered_ids(count: int, prefix: str = "sim-") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(1, count + 1)]


def provision_fleet(
    api: httpx.Client,
    device_ids: list[str],
    path: Path,
    *,
    workers: int = 8,
    progress: Callable[[int], None] = lambda done: None,
    rotate: bool = False,
) -> list[dict[str, str]]:
    """``rotate``: devices that exist but whose password is not in ``path`` get a new one (their
    running login is cut off). Without it they are refused, and nothing is changed."""
    known: dict[str, dict[str, str]] = {}
    if path.exists():
        known = {row["id"]: row for row in json.loads(path.read_text())}
    listing = api.get("/api/devices")
    if listing.status_code != 200:
        raise ProvisioningError(
            f"cannot list devices: HTTP {listing.status_code} {listing.text[:200]}"
        )
    existing = {d["id"] for d in listing.json()["devices"]}
    unknown_password = sorted(i for i in set(device_ids) & existing if i not in known)
    if unknown_password and not rotate:
        shown = ", ".join(unknown_password[:5]) + (" …" if len(unknown_password) > 5 else "")
        raise ProvisioningError(
            f"{len(unknown_password)} device(s) already exist and their passwords are not in "
            f"{path}: {shown}. Pass --rotate to give them new passwords (a device still using "
            "the old one is disconnected and shows offline until it logs in with the new one)."
        )
    done = 0

    def ensure(device_id: str) -> dict[str, str]:
        nonlocal done
        if device_id in known and device_id in existing:
            row = known[device_id]
        else:
            if device_id in existing:
                response = api.post(api_path("devices", device_id, "rotate"))
            else:
                response = api.post("/api/devices", json={"id": device_id})
            if response.status_code not in (200, 201):
                raise ProvisioningError(
                    f"provisioning {device_id}: HTTP {response.status_code} {response.text[:200]}"
                )
            row = response.json()
        done += 1
        progress(done)
        return row

    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(ensure, device_ids))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(rows, out, indent=1)
    os.replace(tmp, path)
    return rows
