"""``tether gateway``: the API, WebSocket, SSE and dashboard, with the bridge in this process."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from tether_cli.bridge import add_bridge_flags, bridge_settings, hold_data_dir
from tether_cli.broker import add_broker_flags
from tether_cli.flags import add_flags, build
from tether_cli.log_redaction import install_redaction, secrets_in
from tether_cli.options import GatewayOptions
from ui_gateway.auth import TokenTable
from ui_gateway.server import uvicorn_config
from ui_gateway.settings import GatewaySettings


def add_http_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, GatewaySettings, only=("host", "port"))
    add_flags(parser, GatewayOptions)


def cmd_gateway(args: argparse.Namespace) -> int:
    options: GatewayOptions = build(GatewayOptions, args)
    tokens = TokenTable.load(options.tokens_file)
    if not len(tokens):
        print("tether: no tokens: set TETHER_ADMIN_TOKEN or pass --tokens-file", file=sys.stderr)
        return 2
    with hold_data_dir(args, "gateway"):
        config = uvicorn_config(bridge_settings(args), tokens, build(GatewaySettings, args))
        install_redaction(secrets_in(args))  # again: uvicorn has just set up its own handlers
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser(
        "gateway", help="serve the API, WebSocket, SSE and dashboard (with the bridge)"
    )
    add_broker_flags(gateway)
    add_bridge_flags(gateway)
    add_http_flags(gateway)
    gateway.set_defaults(handler=cmd_gateway)
