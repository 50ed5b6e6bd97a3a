"""``tether``: one command, many subcommands; every flag also reads a ``TETHER_*`` variable."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

import tether
from mosquitto.config import load_or_create_bridge_credentials, render_broker_files
from mosquitto.process import MosquittoProcess
from tether.cli_errors import run_handler
from tether.flags import add_broker_flags, add_http_address_flags, broker_settings, env_flag
from tether.log_redaction import install_redaction, secrets_in


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


def register_broker_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = sub.add_parser(
        "broker-config", help="write Mosquitto's config for a port and data directory"
    )
    add_broker_flags(config)
    env_flag(
        config,
        "--dynsec-plugin",
        env="DYNSEC_PLUGIN",
        default_text="found here",
        help="path of mosquitto_dynamic_security.so as the broker sees it",
    )
    env_flag(
        config,
        "--broker-user",
        env="BROKER_USER",
        default_text="the data dir's owner",
        help="the user Mosquitto drops to when started as root",
    )
    config.set_defaults(handler=cmd_broker_config)

    broker = sub.add_parser("broker", help="run Mosquitto in the foreground with Tether's config")
    add_broker_flags(broker)
    broker.set_defaults(handler=cmd_broker)


def cmd_up(args: argparse.Namespace) -> int:
    from tether.stack import StackSettings, run_up

    return run_up(
        StackSettings(
            data_dir=args.data_dir,
            mqtt_port=args.mqtt_port,
            mqtt_bind=args.mqtt_bind,
            http_host=args.http_host,
            http_port=args.http_port,
            shards=args.shards,
            simulate=args.simulate,
            sim_latency=args.sim_latency,
            sim_failure_rate=args.sim_failure_rate,
        )
    )


def register_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser(
        "up", help="run the whole local stack: broker, bridge, gateway (and --simulate N devices)"
    )
    add_broker_flags(up)
    add_http_address_flags(up)
    env_flag(
        up,
        "--shards",
        env="SHARDS",
        type=int,
        default_text="8",
        help="shard count of a new store; an existing store keeps its own",
    )
    env_flag(
        up,
        "--simulate",
        env="SIMULATE",
        type=int,
        default=0,
        metavar="N",
        help="also run N simulated devices, provisioned through the API",
    )
    env_flag(
        up,
        "--sim-latency",
        env="SIM_LATENCY",
        type=float,
        default=0.05,
        help="mean handler latency of the simulated devices, seconds",
    )
    env_flag(
        up,
        "--sim-failure-rate",
        env="SIM_FAILURE_RATE",
        type=float,
        default=0.0,
        help="share of commands the simulated devices fail (0..1)",
    )
    up.set_defaults(handler=cmd_up)


def registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Each package adds its own subcommands; imported here so ``tether --help`` lists them all."""
    import broker_bridge.cli
    import broker_bridge.db_stats
    import devices.cli
    import ui_gateway.cli

    return [
        register_up,
        register_broker_commands,
        broker_bridge.cli.register,
        broker_bridge.db_stats.register,
        devices.cli.register,
        ui_gateway.cli.register,
    ]


def version() -> str:
    """The installed package's version (pyproject.toml), or the source tree's when not installed."""
    try:
        return importlib.metadata.version("tether")
    except importlib.metadata.PackageNotFoundError:
        return tether.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description=__doc__)
    parser.add_argument("--version", action="version", version=f"tether {version()}")
    env_flag(parser, "-v", "--verbose", env="VERBOSE", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `tether status | head` ends quietly
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction(secrets_in(args))  # no token reaches a log line, whoever logs it
    return run_handler(args.handler, args)


if __name__ == "__main__":
    sys.exit(main())
