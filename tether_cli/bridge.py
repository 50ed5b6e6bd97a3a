"""``tether bridge``: a bridge worker, owning the shard groups whose leases it holds.

Several workers may run on one data directory: each owns its share of the groups, and takes
over a group whose owner died (see :mod:`broker_bridge.worker`)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from broker_bridge.bridge import BridgeSettings
from broker_bridge.mqtt_session import SessionSettings
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.worker import Worker, WorkerSettings
from mosquitto.config import (
    BRIDGE_SECRET_FILE_NAME,
    BrokerConfigError,
    load_or_create_bridge_credentials,
)
from tether.wording import plural
from tether_cli.broker import add_broker_flags
from tether_cli.flags import add_flags, build
from tether_cli.options import BridgeLogin, DataDirs


def add_bridge_flags(parser: argparse.ArgumentParser) -> None:
    """Flags for anything that runs a bridge (``tether bridge``, the gateway)."""
    group = parser.add_argument_group("bridge")
    add_flags(group, BridgeLogin, only=("mqtt_host", "mqtt_username", "mqtt_password"))
    add_flags(group, SessionSettings)
    add_flags(group, BridgeSettings, only=("prefix", "shards", "groups", "synchronous"))
    add_flags(group, DeliveryPolicy)
    add_flags(group, BridgeSettings, only=("sweep_interval",))


def add_worker_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser.add_argument_group("worker"), WorkerSettings)


def bridge_settings(args: argparse.Namespace) -> BridgeSettings:
    login: BridgeLogin = build(BridgeLogin, args)
    username, password = login.mqtt_username, login.mqtt_password
    if not username or not password:
        directory = build(DataDirs, args).broker
        if not (directory / BRIDGE_SECRET_FILE_NAME).exists():
            raise BrokerConfigError(
                f"no bridge credentials: pass --mqtt-username/--mqtt-password or run the broker "
                f"with `tether broker` so {directory / BRIDGE_SECRET_FILE_NAME} exists"
            )
        creds = load_or_create_bridge_credentials(directory)
        username, password = creds.username, creds.password
    data_dir: Path = args.data_dir
    return build(
        BridgeSettings,
        args,
        data_dir=(data_dir / "store").resolve(),
        mqtt=build(
            SessionSettings,
            args,
            host=login.mqtt_host,
            port=args.mqtt_port,
            username=username,
            password=password,
        ),
        policy=build(DeliveryPolicy, args),
    )


def cmd_bridge(args: argparse.Namespace) -> int:
    worker = Worker(build(WorkerSettings, args, bridge=bridge_settings(args)))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(
        f"bridge worker {worker.settings.name}: store {worker.settings.bridge.data_dir} "
        f"({plural(worker.shard_count, 'shard')} in {plural(worker.groups, 'group')}), "
        f"broker {args.mqtt_host}:{args.mqtt_port}",
        flush=True,
    )
    worker.run(stop)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "bridge", help="run a bridge worker: it owns shard groups of the command store (no HTTP)"
    )
    add_broker_flags(parser)
    add_bridge_flags(parser)
    add_worker_flags(parser)
    parser.set_defaults(handler=cmd_bridge)
