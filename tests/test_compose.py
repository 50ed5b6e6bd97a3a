"""No Docker engine runs in CI, so compose.yaml is checked as a file: paths, commands, ports."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tether_cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_every_built_service_has_its_dockerfile_and_sources() -> None:
    for name, service in SERVICES.items():
        if "build" in service:
            build = service["build"]
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert dockerfile.is_file(), name
            for line in dockerfile.read_text().splitlines():
                if line.startswith("COPY "):
                    for source in line.split()[1:-1]:
                        assert (context / source).exists(), f"{dockerfile}: {source}"


def test_every_bind_mount_exists_and_every_volume_is_declared() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: undeclared volume {source}"


TETHER_SERVICES = sorted(n for n, s in SERVICES.items() if command_of(s)[:1] == ["tether"])


def test_the_stack_has_tether_services() -> None:
    assert set(TETHER_SERVICES) == {"broker-init", "bridge", "tether", "fleet-init", "simulator"}


@pytest.mark.parametrize("name", TETHER_SERVICES)
def test_tether_commands_are_real_subcommands_with_valid_flags(name: str) -> None:
    command = command_of(SERVICES[name])
    build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown command or flag


def test_mosquitto_reads_the_config_broker_init_writes() -> None:
    init = build_parser().parse_args(command_of(SERVICES["broker-init"])[1:])
    broker = SERVICES["mosquitto"]
    assert broker["image"].startswith("eclipse-mosquitto:2")
    assert command_of(broker)[-1] == f"{init.broker_dir}/mosquitto.conf"
    assert init.mqtt_bind == "0.0.0.0"
    published = [p for p in broker["ports"] if str(p).endswith(f":{init.mqtt_port}")]
    assert published, "the broker's listener port is not published"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in broker["volumes"]}
    init_mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["broker-init"]["volumes"]}
    assert mounts[str(init.broker_dir)] == init_mounts[str(init.broker_dir)]


def parsed(name: str) -> object:
    return build_parser().parse_args(command_of(SERVICES[name])[1:])


def test_gateway_reaches_the_broker_and_publishes_its_port() -> None:
    gateway = parsed("tether")
    init = parsed("broker-init")
    assert gateway.command == "gateway"  # type: ignore[attr-defined]
    assert gateway.mqtt_host in SERVICES  # type: ignore[attr-defined]
    assert gateway.mqtt_port == init.mqtt_port  # type: ignore[attr-defined]
    assert gateway.broker_dir == init.broker_dir  # type: ignore[attr-defined]
    assert gateway.http_host == "0.0.0.0"  # type: ignore[attr-defined]
    published = [str(p).rsplit(":", 1)[1] for p in SERVICES["tether"]["ports"]]
    assert str(gateway.http_port) in published  # type: ignore[attr-defined]
    assert f":{gateway.http_port}/readyz" in " ".join(SERVICES["tether"]["healthcheck"]["test"])  # type: ignore[attr-defined]


def test_the_bridge_worker_shares_the_store_and_the_broker_with_the_gateway() -> None:
    bridge, gateway = parsed("bridge"), parsed("tether")
    assert bridge.command == "bridge"  # type: ignore[attr-defined]
    for name in ("mqtt_host", "mqtt_port", "broker_dir", "data_dir"):
        assert getattr(bridge, name) == getattr(gateway, name), name
    volumes = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["bridge"]["volumes"]}
    gateway_volumes = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["tether"]["volumes"]}
    assert volumes[str(bridge.data_dir)] == gateway_volumes[str(gateway.data_dir)]  # type: ignore[attr-defined]
    assert SERVICES["bridge"].get("restart") == "unless-stopped"


def test_simulator_uses_the_credentials_fleet_init_writes() -> None:
    fleet = parsed("fleet-init")
    sim = parsed("simulator")
    assert fleet.command == "provision" and sim.command == "simulate"  # type: ignore[attr-defined]
    assert fleet.count == sim.count  # type: ignore[attr-defined]
    assert str(fleet.out) == str(sim.credentials)  # type: ignore[attr-defined]
    host, port = sim.broker.split(":")  # type: ignore[attr-defined]
    assert host in SERVICES and int(port) == parsed("broker-init").mqtt_port  # type: ignore[attr-defined]
    assert fleet.url.split("//")[1].split(":")[0] in SERVICES  # type: ignore[attr-defined]
    for service, directory in (("fleet-init", fleet.out), ("simulator", sim.credentials)):  # type: ignore[attr-defined]
        mounts = [v.split(":")[1] for v in SERVICES[service]["volumes"]]
        assert any(str(directory).startswith(m) for m in mounts), service


def test_every_service_but_the_one_shot_ones_restarts_and_the_long_ones_are_health_checked() -> (
    None
):
    for name in ("mosquitto", "tether"):
        assert "healthcheck" in SERVICES[name]
    for name in ("mosquitto", "tether", "simulator"):
        assert SERVICES[name].get("restart") == "unless-stopped"
