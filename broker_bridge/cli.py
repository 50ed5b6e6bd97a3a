"""``tether bridge``: the MQTT side alone (delivery policy, acks, presence) over a store."""

from __future__ import annotations

import argparse
import signal
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
from tether.datadir_lock import DataDirLock
from tether.flags import add_broker_flags, broker_dir, env_flag
from tether.wording import plural


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in ("", "none", "0") else float(text)


def add_bridge_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for anything that runs a bridge (``tether bridge``, the gateway, ``tether up``)."""
    group = parser.add_argument_group("bridge")
    env_flag(
        group,
        "--mqtt-host",
        env="MQTT_HOST",
        default="127.0.0.1",
        help="the broker's host",
    )
    env_flag(
        group,
        "--mqtt-username",
        env="MQTT_USERNAME",
        default_text="from the broker directory's bridge-credentials.json",
        help="the bridge's broker login",
    )
    env_flag(
        group,
        "--mqtt-password",
        env="MQTT_PASSWORD",
        default_text="from bridge-credentials.json",
        help="the bridge's broker password; prefer the variable",
    )
    env_flag(
        group,
        "--client-id",
        env="CLIENT_ID",
        default="tether-bridge",
        help="the bridge's MQTT client id; keep it stable across restarts",
    )
    env_flag(group, "--prefix", env="PREFIX", default="tether", help="topic prefix")
    env_flag(
        group,
        "--shards",
        env="SHARDS",
        type=int,
        default_text="8",
        help="shard count of a new store; an existing store keeps its own",
    )
    env_flag(
        group,
        "--synchronous",
        env="SYNCHRONOUS",
        default="FULL",
        choices=["NORMAL", "FULL", "EXTRA"],
        help="SQLite synchronous level",
    )
    env_flag(
        group,
        "--pending-limit",
        env="PENDING_LIMIT",
        type=int,
        default=1000,
        help="pending commands per device before queue_full",
    )
    env_flag(
        group,
        "--redelivery-after",
        env="REDELIVERY_AFTER",
        type=float,
        default=30.0,
        help="seconds without `received` before publishing again",
    )
    env_flag(
        group,
        "--max-attempts",
        env="MAX_ATTEMPTS",
        type=int,
        default=10,
        help="publishes before `undeliverable`",
    )
    env_flag(
        group,
        "--execution-timeout",
        env="EXECUTION_TIMEOUT",
        type=float,
        default=300.0,
        help="seconds from delivered to a final ack",
    )
    env_flag(
        group,
        "--default-ttl",
        env="DEFAULT_TTL",
        type=_float_or_none,
        default_text="never",
        help="seconds before an undelivered command expires",
    )
    env_flag(
        group,
        "--sweep-interval",
        env="SWEEP_INTERVAL",
        type=float,
        default=1.0,
        help="seconds between delivery-policy sweeps",
    )


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


def hold_data_dir(args: argparse.Namespace, command: str) -> DataDirLock:
    """Lock ``--data-dir`` for this process (or share a parent ``tether up``'s lock); raises
    :class:`tether.datadir_lock.DataDirBusy` if another stack holds it."""
    return DataDirLock.acquire(
        args.data_dir, command, mqtt_port=args.mqtt_port, http_port=getattr(args, "http_port", None)
    )


def cmd_bridge(args: argparse.Namespace) -> int:
    with hold_data_dir(args, "bridge"):
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
        f"bridge up: store {bridge.settings.data_dir} "
        f"({plural(bridge.store.shard_count, 'shard')}), "
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
