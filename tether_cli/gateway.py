"""``tether gateway``: the API, WebSocket, SSE and dashboard; stateless.

It writes nothing: commands go to the bridge workers over the broker, reads come from the
store's files. Several gateways may serve one HTTP port (``SO_REUSEPORT``)."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from broker_bridge.remote import RemoteService, RemoteSettings
from broker_bridge.store.sharded import check_layout
from tether_cli.bridge import add_bridge_flags, bridge_settings
from tether_cli.broker import add_broker_flags
from tether_cli.flags import add_flags, build
from tether_cli.log_redaction import install_redaction, secrets_in
from tether_cli.options import GatewayOptions
from ui_gateway.auth import TokenTable
from ui_gateway.server import shared_socket, uvicorn_config
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
    bridge = bridge_settings(args)
    check_layout(bridge.data_dir, bridge.shards)
    gateway: GatewaySettings = build(GatewaySettings, args)
    service = RemoteService(RemoteSettings(bridge.data_dir, bridge.mqtt, bridge.prefix))
    config = uvicorn_config(service, tokens, gateway)
    try:
        sock = shared_socket(gateway.host, gateway.port)
    except OSError as exc:
        print(
            f"tether gateway: cannot listen on {gateway.host}:{gateway.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    install_redaction(secrets_in(args))  # again: uvicorn has just set up its own handlers
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gateway = sub.add_parser(
        "gateway",
        help="serve the API, WebSocket, SSE and dashboard (stateless; needs a bridge worker)",
    )
    add_broker_flags(gateway)
    add_bridge_flags(gateway)
    add_http_flags(gateway)
    gateway.set_defaults(handler=cmd_gateway)
