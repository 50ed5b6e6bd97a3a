"""``tether broker`` (Mosquitto in the foreground) and ``tether broker-config`` (its config)."""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from mosquitto.config import (
    BrokerSettings,
    load_or_create_bridge_credentials,
    render_broker_files,
)
from mosquitto.process import MosquittoProcess
from tether_cli.flags import add_flags, build, values
from tether_cli.options import DataDirs


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    """The data directories and the broker's port and address: for every server command."""
    add_flags(parser, DataDirs)
    add_flags(parser, BrokerSettings, only=("port", "bind_address"))


def broker_settings(args: argparse.Namespace) -> BrokerSettings:
    data_dir: DataDirs = build(DataDirs, args)
    return BrokerSettings(**values(BrokerSettings, args), data_dir=data_dir.broker)


def cmd_broker_config(args: argparse.Namespace) -> int:
    settings = broker_settings(args)
    creds = load_or_create_bridge_credentials(settings.data_dir)
    conf = render_broker_files(settings, creds.username, creds.password)
    print(conf)
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    settings = broker_settings(args)
    creds = load_or_create_bridge_credentials(settings.data_dir)
    broker = MosquittoProcess(settings, creds.username, creds.password)
    stop_requested = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    broker.start()
    print(
        f"mosquitto is up on {settings.bind_address}:{settings.port} (pid {broker.pid}); "
        f"config, data and log in {settings.data_dir}; Ctrl-C stops it",
        flush=True,
    )
    try:
        while not stop_requested and broker.running:
            signal.pause()
    finally:
        broker.stop()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "broker-config", help="write Mosquitto's config for a port and data directory"
    )
    add_broker_flags(config)
    add_flags(config, BrokerSettings, only=("dynsec_plugin", "user"))
    config.set_defaults(handler=cmd_broker_config)

    broker = sub.add_parser("broker", help="run Mosquitto in the foreground with Tether's config")
    add_broker_flags(broker)
    broker.set_defaults(handler=cmd_broker)
