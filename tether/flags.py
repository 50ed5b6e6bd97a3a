"""Flags shared by several subcommands; each also reads a ``TETHER_*`` environment variable."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from mosquitto.config import BrokerSettings


def env_default(name: str, fallback: str | None = None) -> str | None:
    return os.environ.get(f"TETHER_{name}", fallback)


def env_path(name: str) -> Path | None:
    value = env_default(name)
    return Path(value) if value else None


def broker_dir(args: argparse.Namespace) -> Path:
    chosen: Path | None = args.broker_dir
    return (chosen or args.data_dir / "mosquitto").resolve()


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env_default("DATA_DIR", ".tether") or ".tether"),
        help="the stack's state: broker files in mosquitto/, the command store in store/ "
        "(TETHER_DATA_DIR, default .tether)",
    )
    parser.add_argument(
        "--broker-dir",
        type=Path,
        default=env_path("BROKER_DIR"),
        help="the broker's config, persistence and credentials, if not DATA_DIR/mosquitto "
        "(TETHER_BROKER_DIR)",
    )
    parser.add_argument(
        "--mqtt-port",
        type=int,
        default=int(env_default("MQTT_PORT", "18830") or 18830),
        help="the broker's port (TETHER_MQTT_PORT, default 18830, clear of a broker on 1883)",
    )
    parser.add_argument(
        "--mqtt-bind",
        default=env_default("MQTT_BIND", "127.0.0.1"),
        help="the address the broker listens on (TETHER_MQTT_BIND, default 127.0.0.1)",
    )


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    return BrokerSettings(
        port=args.mqtt_port,
        data_dir=broker_dir(args),
        bind_address=args.mqtt_bind,
        dynsec_plugin=getattr(args, "dynsec_plugin", None),
        user=getattr(args, "broker_user", None),
    )


def add_http_address_flags(parser: argparse.ArgumentParser) -> None:
    """Where the dashboard and API listen: for ``tether gateway`` and ``tether up``."""
    parser.add_argument(
        "--http-host",
        default=env_default("HTTP_HOST", "127.0.0.1"),
        help="address of the dashboard and API (TETHER_HTTP_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(env_default("HTTP_PORT", "8080") or 8080),
        help="port of the dashboard and API (TETHER_HTTP_PORT, default 8080)",
    )
