"""``tether device`` (one device agent) and ``tether simulate N`` (a simulated fleet).

Every flag also reads a ``TETHER_*`` environment variable; secrets are better passed that way
(``TETHER_DEVICE_PASSWORD``, ``TETHER_ADMIN_PASSWORD``) than on a command line.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devices import demo
from devices.agent import DeviceAgent
from devices.config import AgentSettings, TlsSettings, parse_broker
from devices.errors import ConfigError
from devices.handlers import HandlerRegistry
from devices.provision import DeviceCredentials, load_credentials, save_credentials, sim_ids
from devices.simulator import SimOptions, Simulator, print_report, run_until_signalled
from mosquitto.config import BrokerSettings
from tether.wording import plural
from tether_cli.dynsec_fleet import bridge_admin_credentials, provision
from tether_cli.flags import add_flags, build, default_of, env_value, values
from tether_cli.options import (
    BridgeLogin,
    Connection,
    DataDirs,
    DeviceOptions,
    ProvisionOptions,
    SimLogin,
    SimRun,
)

log = logging.getLogger(__name__)


def broker_address(args: argparse.Namespace) -> str:
    """``--broker``, else ``TETHER_MQTT_HOST:TETHER_MQTT_PORT`` with the defaults of both."""
    if args.broker:
        return str(args.broker)
    host = env_value("MQTT_HOST") or default_of(BridgeLogin, "mqtt_host")
    port = env_value("MQTT_PORT") or default_of(BrokerSettings, "port")
    return f"{host}:{port}"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    add_flags(group, Connection, only=("broker",))
    add_flags(group, AgentSettings, only=("prefix", "mqtt_version", "keepalive"))
    add_flags(group, Connection, only=("tls",))
    add_flags(group, TlsSettings)


def _tls(args: argparse.Namespace) -> TlsSettings | None:
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    return build(TlsSettings, args)


# tether device


def cmd_device(args: argparse.Namespace) -> int:
    agent = build_agent(args)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    agent.start()
    settings = agent.settings
    print(
        f"device {settings.device_id} running: broker {settings.host}:{settings.port}, "
        f"journal {settings.journal_path}, commands {', '.join(agent.registry.names()) or '-'}",
        flush=True,
    )
    try:
        stop.wait()
    finally:
        agent.stop()
    return 0


def build_agent(args: argparse.Namespace) -> DeviceAgent:
    if not args.id:
        raise ConfigError("give the device id with --id (or TETHER_DEVICE_ID)")
    host, port = parse_broker(broker_address(args))
    journal = args.journal or Path(".tether") / "devices" / f"{args.id}.journal.sqlite3"
    settings = build(
        AgentSettings,
        args,
        host=host,
        port=port,
        username=args.username or args.id,
        tls=_tls(args),
        journal_path=journal.resolve(),
    )
    agent = DeviceAgent(settings)
    if not args.no_demo:
        demo.install(agent)
    for spec in args.handlers:
        load_handlers(spec, agent)
    if not len(agent.registry):
        raise ConfigError("no commands: drop --no-demo or give --handlers module:attr")
    return agent


def load_handlers(spec: str, agent: DeviceAgent) -> None:
    """``module:attr``: a :class:`HandlerRegistry`, or a callable that takes the agent."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--handlers {spec!r}: expected module:attr")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn's --app-dir: modules next to you import
    module = importlib.import_module(module_name)
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"--handlers {spec!r}: {module_name} has no {attr}") from None
    if isinstance(target, HandlerRegistry):
        agent.registry.include(target)
    elif callable(target):
        target(agent)
    else:
        raise ConfigError(f"--handlers {spec!r}: not a HandlerRegistry nor a callable")


# tether simulate


def cmd_simulate(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        logging.getLogger("devices.pipeline").setLevel(logging.WARNING)
    host, port = parse_broker(broker_address(args))
    credentials = fleet_credentials(args, host, port)
    connection = values(AgentSettings, args, only=("prefix", "mqtt_version", "keepalive"))
    options = build(SimOptions, args, host=host, port=port, **connection)
    simulator = Simulator(options, credentials, report=print_report)
    run: SimRun = build(SimRun, args)
    asyncio.run(run_until_signalled(simulator, run.duration))
    return 0


def fleet_credentials(args: argparse.Namespace, host: str, port: int) -> list[DeviceCredentials]:
    count: int = args.count
    if count < 1:
        raise ConfigError("simulate at least one device")
    if args.provision:
        from broker_bridge.dynsec_admin import DynsecAdmin

        username, password = args.admin_username, args.admin_password
        if not username or not password:
            username, password = bridge_admin_credentials(build(DataDirs, args).broker)
        ids = sim_ids(count, args.id_prefix)
        with DynsecAdmin(host, port, username, password, prefix=args.prefix, timeout=120) as admin:
            creds = provision(
                admin.execute,
                ids,
                prefix=args.prefix,
                progress=lambda n: print_report({"type": "provisioned", "devices": n}),
            )
        if args.credentials:
            save_credentials(args.credentials, creds)
        return creds
    if not args.credentials:
        raise ConfigError("give --credentials FILE, or --provision to create the devices")
    creds = load_credentials(args.credentials)
    if len(creds) < count:
        raise ConfigError(
            f"{args.credentials} holds {plural(len(creds), 'device')}, fewer than {count}"
        )
    return creds[:count]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    device = sub.add_parser("device", help="run the device agent for one device")
    add_flags(device, AgentSettings, only=("device_id", "username", "password"))
    add_connection_flags(device)
    add_flags(device, AgentSettings, only=("journal_path", "journal_keep"))
    add_flags(device, DeviceOptions)
    add_flags(device, AgentSettings, only=("event_buffer", "event_policy", "reconnect_cap"))
    device.set_defaults(handler=cmd_device)

    sim = sub.add_parser("simulate", help="run N simulated devices in this one process")
    sim.add_argument("count", type=int, help="how many devices")
    add_connection_flags(sim)
    creds = sim.add_argument_group("credentials")
    add_flags(creds, SimLogin, only=("credentials", "provision"))
    add_flags(creds, ProvisionOptions, only=("id_prefix",))
    add_flags(creds, SimLogin, only=("admin_username", "admin_password"))
    add_flags(creds, DataDirs)
    knobs = sim.add_argument_group("behaviour")
    add_flags(knobs, SimOptions, skip=("seed",))
    add_flags(knobs, SimRun)
    add_flags(knobs, SimOptions, only=("seed",))
    sim.set_defaults(handler=cmd_simulate)
