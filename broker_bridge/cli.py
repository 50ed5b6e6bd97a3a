"""``tether bridge``: the MQTT side alone (delivery policy, acks, presence) over a store."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from broker_bridge.bridge import Bridge, BridgeSettings
from broker_bridge.mqtt_session import SessionSettings
from broker_bridge.policy import DeliveryPolicy
from mosquitto.config import (
    BRIDGE_SECRET_FILE_NAME,
    BrokerConfigError,
    load_or_create_bridge_credentials,
)
from tether.datadir_lock import DataDirBusy, DataDirLock
from tether.flags import add_broker_flags, broker_dir, env_default


def _env(name: str, fallback: str | None = None) -> str | None:
    return env_default(name, fallback)


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in ("", "none", "0") else float(text)


def add_bridge_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for anything that runs a bridge (``tether bridge``, the gateway, ``tether up``)."""
    group = parser.add_argument_group("bridge")
    group.add_argument(
        "--mqtt-host",
        default=_env("MQTT_HOST", "127.0.0.1"),
        help="the broker's host (TETHER_MQTT_HOST, default 127.0.0.1)",
    )
    group.add_argument(
        "--mqtt-username",
        default=_env("MQTT_USERNAME"),
        help="the bridge's broker login (TETHER_MQTT_USERNAME; default: from the "
        "broker directory's bridge-credentials.json)",
    )
    group.add_argument(
        "--mqtt-password", default=_env("MQTT_PASSWORD"), help="(TETHER_MQTT_PASSWORD)"
    )
    group.add_argument(
        "--client-id",
        default=_env("CLIENT_ID", "tether-bridge"),
        help="the bridge's MQTT client id; keep it stable across restarts "
        "(TETHER_CLIENT_ID, default tether-bridge)",
    )
    group.add_argument(
        "--prefix",
        default=_env("PREFIX", "tether"),
        help="topic prefix (TETHER_PREFIX, default tether)",
    )
    group.add_argument(
        "--shards",
        type=int,
        default=_int_env("SHARDS"),
        help="shard count of a new store; an existing store keeps its own "
        "(TETHER_SHARDS, default 8)",
    )
    group.add_argument(
        "--synchronous",
        default=_env("SYNCHRONOUS", "FULL"),
        choices=["NORMAL", "FULL", "EXTRA"],
        help="SQLite synchronous level (TETHER_SYNCHRONOUS, default FULL)",
    )
    group.add_argument(
        "--pending-limit",
        type=int,
        default=_int_env("PENDING_LIMIT", 1000),
        help="pending commands per device before queue_full (default 1000)",
    )
    group.add_argument(
        "--redelivery-after",
        type=float,
        default=float(_env("REDELIVERY_AFTER", "30") or 30),
        help="seconds without `received` before publishing again (default 30)",
    )
    group.add_argument(
        "--max-attempts",
        type=int,
        default=_int_env("MAX_ATTEMPTS", 10),
        help="publishes before `undeliverable` (default 10)",
    )
    group.add_argument(
        "--execution-timeout",
        type=float,
        default=float(_env("EXECUTION_TIMEOUT", "300") or 300),
        help="seconds from delivered to a final ack (default 300)",
    )
    group.add_argument(
        "--default-ttl",
        type=_float_or_none,
        default=_float_or_none(_env("DEFAULT_TTL", "") or ""),
        help="seconds before an undelivered command expires (default: never)",
    )
    group.add_argument(
        "--sweep-interval",
        type=float,
        default=float(_env("SWEEP_INTERVAL", "1") or 1),
        help="seconds between delivery-policy sweeps (default 1)",
    )


def _int_env(name: str, fallback: int | None = None) -> int | None:
    value = _env(name)
    return int(value) if value else fallback


def bridge_settings(args: argparse.Namespace) -> BridgeSettings:
    username, password = args.mqtt_username, args.mqtt_password
    if not username or not password:
        directory = broker_dir(args)
        if not (directory / BRIDGE_SECRET_FILE_NAME).exists():
            raise BrokerConfigError(
                f"no bridge credentials: pass --mqtt-username/--mqtt-password or run the broker "
                f"with `tether broker` so {directory / BRIDGE_SECRET_FILE_NAME} exists"
            )
        creds = load_or_create_bridge_credentials(directory)
        username, password = creds.username, creds.password
    data_dir: Path = args.data_dir
    return BridgeSettings(
        data_dir=(data_dir / "store").resolve(),
        mqtt=SessionSettings(
            args.mqtt_host, args.mqtt_port, username, password, client_id=args.client_id
        ),
        prefix=args.prefix,
        shards=args.shards,
        synchronous=args.synchronous,
        policy=DeliveryPolicy(
            pending_limit=args.pending_limit,
            redelivery_after=args.redelivery_after,
            max_attempts=args.max_attempts,
            execution_timeout=args.execution_timeout,
            default_ttl=args.default_ttl,
        ),
        sweep_interval=args.sweep_interval,
    )


def hold_data_dir(args: argparse.Namespace, command: str) -> DataDirLock | None:
    """Lock ``--data-dir`` for this process (or share a parent ``tether up``'s lock); print why
    not and return None if another stack holds it."""
    try:
        return DataDirLock.acquire(
            args.data_dir,
            command,
            mqtt_port=args.mqtt_port,
            http_port=getattr(args, "http_port", None),
        )
    except DataDirBusy as exc:
        print(f"tether {command}: {exc}", file=sys.stderr, flush=True)
    except OSError as exc:
        print(f"tether {command}: cannot use {args.data_dir}: {exc}", file=sys.stderr, flush=True)
    return None


def cmd_bridge(args: argparse.Namespace) -> int:
    lock = hold_data_dir(args, "bridge")
    if lock is None:
        return 2
    with lock:
        return _run_bridge(args)


def _run_bridge(args: argparse.Namespace) -> int:
    bridge = Bridge(bridge_settings(args))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    bridge.start()
    print(
        f"bridge up: store {bridge.settings.data_dir} ({bridge.store.shard_count} shards), "
        f"broker {args.mqtt_host}:{args.mqtt_port}",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        bridge.stop()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("bridge", help="run the MQTT bridge and the command store (no HTTP)")
    add_broker_flags(parser)
    add_bridge_flags(parser)
    parser.set_defaults(handler=cmd_bridge)
