"""The dynamic-security model of Tether, as data: initial file, device roles, control commands.

Pure: building the JSON that Mosquitto's dynamic security plugin reads from its file or from
``$CONTROL/dynamic-security/v1``. Sending it is the bridge's job.

Debian's Mosquitto 2.0.11 does not expand ``%u``/``%c`` in dynsec ACLs, so every device gets a
role of its own holding literal topics.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
BRIDGE_ROLE = "tether-bridge"
PBKDF2_ITERATIONS = 101  # what mosquitto_ctrl writes; the plugin reads the count from the file

Command = dict[str, Any]


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The ``password``/``salt``/``iterations`` fields the plugin stores (PBKDF2-SHA512)."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def bridge_role_acls(prefix: str) -> list[dict[str, Any]]:
    """The bridge may administer dynsec, read ``$SYS`` and use every topic under the prefix."""
    acls = []
    for topic in ("$CONTROL/dynamic-security/#", f"{prefix}/#"):
        acls += [
            _acl("publishClientSend", topic),
            _acl("publishClientReceive", topic),
            _acl("subscribePattern", topic),
            _acl("unsubscribePattern", topic),
        ]
    acls += [_acl("publishClientReceive", "$SYS/#"), _acl("subscribePattern", "$SYS/#")]
    return acls


def device_role_name(device_id: str) -> str:
    return f"device:{device_id}"


def device_role_acls(prefix: str, device_id: str) -> list[dict[str, Any]]:
    """A device subscribes to its own ``cmd`` only and publishes to its own ack/evt/status only."""
    base = f"{prefix}/{device_id}"
    return [
        _acl("subscribePattern", f"{base}/cmd"),
        _acl("publishClientReceive", f"{base}/cmd"),
        _acl("publishClientSend", f"{base}/ack"),
        _acl("publishClientSend", f"{base}/evt"),
        _acl("publishClientSend", f"{base}/status"),
    ]


# Deny by default, including receiving: a device only ever gets what its role grants.
DEFAULT_ACL_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


def initial_dynsec_config(
    admin_username: str, admin_password: str, prefix: str = "tether"
) -> dict[str, Any]:
    """The plugin's file before anything is provisioned: the bridge's client and role only."""
    return {
        "defaultACLAccess": DEFAULT_ACL_ACCESS,
        "clients": [
            {
                "username": admin_username,
                "textName": "Tether bridge",
                "roles": [{"rolename": BRIDGE_ROLE}],
                **hash_password(admin_password),
            }
        ],
        "groups": [],
        "roles": [{"rolename": BRIDGE_ROLE, "acls": bridge_role_acls(prefix)}],
    }


def create_device_commands(
    prefix: str, device_id: str, username: str, password: str
) -> list[Command]:
    """Create the device's role, then its client bound to client id == username."""
    role = device_role_name(device_id)
    return [
        {"command": "createRole", "rolename": role, "acls": device_role_acls(prefix, device_id)},
        {
            "command": "createClient",
            "username": username,
            "password": password,
            "clientid": username,
            "textname": f"Tether device {device_id}",
            "roles": [{"rolename": role}],
        },
    ]


def delete_device_commands(device_id: str, username: str) -> list[Command]:
    """Deleting the client also disconnects it at once; then drop its role."""
    return [
        {"command": "deleteClient", "username": username},
        {"command": "deleteRole", "rolename": device_role_name(device_id)},
    ]
