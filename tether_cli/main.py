"""``tether``: one command, many subcommands; every flag also reads a ``TETHER_*`` variable.

Each flag is a field of a settings dataclass (``tether_cli.flags``), where its default lives.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import signal
import sys
from collections.abc import Callable, Sequence

import tether
from broker_bridge.bridge import BridgeSettings
from tether_cli.broker import add_broker_flags
from tether_cli.errors import run_handler
from tether_cli.flags import add_flags, build
from tether_cli.log_redaction import install_redaction, secrets_in
from tether_cli.options import Verbosity
from tether_cli.paho_tuning import share_property_tables
from ui_gateway.settings import GatewaySettings


def cmd_up(args: argparse.Namespace) -> int:
    from tether_cli.stack import StackSettings, run_up

    return run_up(
        build(
            StackSettings,
            args,
            data_dir=args.data_dir,
            mqtt_port=args.mqtt_port,
            mqtt_bind=args.mqtt_bind,
            http_host=args.http_host,
            http_port=args.http_port,
            shards=args.shards,
        )
    )


def register_up(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tether_cli.stack import StackSettings

    up = sub.add_parser(
        "up", help="run the whole local stack: broker, bridge, gateway (and --simulate N devices)"
    )
    add_broker_flags(up)
    add_flags(up, GatewaySettings, only=("host", "port"))
    add_flags(up, BridgeSettings, only=("shards",))
    add_flags(up, StackSettings)
    up.set_defaults(handler=cmd_up)


def registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """One module per group of subcommands, in the order ``tether --help`` lists them."""
    from tether_cli import bridge, broker, client, db, devices, gateway

    return [
        register_up,
        broker.register,
        bridge.register,
        db.register,
        devices.register,
        gateway.register,
        client.register,
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
    add_flags(parser, Verbosity)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    install_redaction(secrets_in(args))  # no token reaches a log line, whoever logs it
    share_property_tables()  # the program's choice, made here: never on a library's import
    return run_handler(args.handler, args)


def cli() -> int:
    """The ``tether`` program (console script, ``python -m tether_cli``). Only a whole program
    may take SIGPIPE's default: ``tether status | head`` then ends quietly. In a process that
    calls :func:`main` (tests, an embedder) a write to a closed socket would kill it instead."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return main()


if __name__ == "__main__":
    sys.exit(cli())
