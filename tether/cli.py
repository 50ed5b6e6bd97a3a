"""``tether``: one command, many subcommands; every flag also reads a ``TETHER_*`` variable."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from mosquitto.config import (
    BrokerConfigError,
    load_or_create_bridge_credentials,
    render_broker_files,
)
from mosquitto.process import MosquittoProcess
from tether.flags import add_broker_flags, add_http_address_flags, broker_settings, env_default
from tether.log_redaction import install_redaction, secrets_in

Handler = Callable[[argparse.Namespace], int]


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
    config.add_argument(
        "--dynsec-plugin",
        default=env_default("DYNSEC_PLUGIN"),
        help="path of mosquitto_dynamic_security.so as the broker sees it (default: found here)",
    )
    config.add_argument(
        "--broker-user",
        default=env_default("BROKER_USER"),
        help="the user Mosquitto drops to when started as root (default: the data dir's owner)",
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
    up.add_argument(
        "--shards",
        type=int,
        default=int(s) if (s := env_default("SHARDS")) else None,
        help="shard count of a new store (TETHER_SHARDS, default 8)",
    )
    up.add_argument(
        "--simulate",
        type=int,
        default=int(env_default("SIMULATE", "0") or 0),
        metavar="N",
        help="also run N simulated devices, provisioned through the API (TETHER_SIMULATE)",
    )
    up.add_argument("--sim-latency", type=float, default=0.05, help="simulated handler latency, s")
    up.add_argument(
        "--sim-failure-rate", type=float, default=0.0, help="share of commands that fail"
    )
    up.set_defaults(handler=cmd_up)


def registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Each package adds its own subcommands; imported here so ``tether --help`` lists them all."""
    import broker_bridge.cli
    import devices.cli
    import ui_gateway.cli

    return [
        register_up,
        register_broker_commands,
        broker_bridge.cli.register,
        devices.cli.register,
        ui_gateway.cli.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tether", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokerConfigError as exc:
        print(f"tether: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
