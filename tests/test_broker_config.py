from __future__ import annotations

import json
from pathlib import Path

import pytest

from mosquitto.config import (
    BrokerConfigError,
    BrokerSettings,
    load_or_create_bridge_credentials,
    render_broker_files,
    render_config,
)
from mosquitto.dynsec import hash_password


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            found.setdefault(key, []).append(value)
    return found


def test_rendered_config_holds_the_hardening(tmp_path: Path) -> None:
    conf = directives(render_config(BrokerSettings(port=4321, data_dir=tmp_path)))
    assert conf["listener"] == ["4321 127.0.0.1"]
    assert conf["set_tcp_nodelay"] == ["true"]
    assert conf["allow_anonymous"] == ["false"]
    assert conf["persistence"] == ["true"]
    assert conf["persistence_location"] == [f"{tmp_path}/"]
    assert int(conf["max_queued_messages"][0]) > 1000
    assert int(conf["max_packet_size"][0]) >= 64 * 1024
    assert conf["plugin_opt_config_file"] == [f"{tmp_path}/dynamic-security.json"]
    assert "persistent_client_expiration" in conf


def test_settings_refuse_a_queue_below_the_pending_limit(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError):
        BrokerSettings(port=1, data_dir=tmp_path, max_queued_messages=1000)


def test_restart_keeps_provisioned_clients_and_bridge_password(tmp_path: Path) -> None:
    settings = BrokerSettings(port=4321, data_dir=tmp_path)
    creds = load_or_create_bridge_credentials(tmp_path)
    render_broker_files(settings, creds.username, creds.password)
    dynsec_file = tmp_path / "dynamic-security.json"
    document = json.loads(dynsec_file.read_text())
    document["clients"].append({"username": "dev-1"})
    dynsec_file.write_text(json.dumps(document))

    again = load_or_create_bridge_credentials(tmp_path)
    render_broker_files(settings, again.username, again.password)
    assert again == creds
    assert [c["username"] for c in json.loads(dynsec_file.read_text())["clients"]] == [
        creds.username,
        "dev-1",
    ]
    assert (tmp_path / "bridge-credentials.json").stat().st_mode & 0o077 == 0


def test_password_hash_matches_mosquitto_ctrl_format() -> None:
    # Produced by `mosquitto_ctrl dynsec init` (2.0.11) for the password "secretpw".
    stored = hash_password("secretpw", salt=__import__("base64").b64decode("UYRtEapDg2UMRhxB"))
    assert stored["password"] == (
        "cXuCLXadoce55okwEf6+cA7imxHczgROvA+ZWQj5ABicXduno0ainLWgRtvAM1quPjw3t0rNmRFw/GnDIQGU5g=="
    )
    assert stored["iterations"] == 101


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BrokerConfigError, match="not writable"):
        render_broker_files(BrokerSettings(port=1, data_dir=blocker / "sub"), "u", "p")
