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
from devices.config import AgentSettings, MqttVersion, TlsSettings, parse_broker
from devices.errors import ConfigError
from devices.events import OverflowPolicy
from devices.handlers import HandlerRegistry
from devices.provision import (
    DeviceCredentials,
    bridge_admin_credentials,
    load_credentials,
    provision,
    save_credentials,
    sim_ids,
)
from devices.simulator import SimOptions, Simulator, print_report, run_until_signalled
from tether.flags import add_data_dir_flags, env_default, env_flag
from tether.wording import plural

log = logging.getLogger(__name__)

DEFAULT_MQTT_PORT = 18830  # `tether broker`'s default, clear of a system broker on 1883


def _default_broker() -> str:
    host = env_default("MQTT_HOST", "127.0.0.1")
    port = env_default("MQTT_PORT", str(DEFAULT_MQTT_PORT))
    return f"{host}:{port}"


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    env_flag(
        group,
        "--broker",
        env="BROKER",
        default=_default_broker(),
        default_text=f"TETHER_MQTT_HOST:TETHER_MQTT_PORT or 127.0.0.1:{DEFAULT_MQTT_PORT}",
        help="the broker as host:port",
    )
    env_flag(group, "--prefix", env="PREFIX", default="tether", help="topic prefix")
    env_flag(
        group,
        "--mqtt-version",
        env="MQTT_VERSION",
        choices=[v.value for v in MqttVersion],
        default=MqttVersion.V5.value,
        help="MQTT protocol version",
    )
    env_flag(
        group,
        "--keepalive",
        env="KEEPALIVE",
        type=int,
        default=25,
        help="keepalive seconds, at most 25",
    )
    env_flag(group, "--tls", env="TLS", action="store_true", help="connect over TLS")
    env_flag(group, "--tls-ca", env="TLS_CA", default_text="the system's", help="CA file")
    env_flag(group, "--tls-cert", env="TLS_CERT", help="client certificate")
    env_flag(group, "--tls-key", env="TLS_KEY", help="client key")
    env_flag(
        group,
        "--tls-insecure",
        env="TLS_INSECURE",
        action="store_true",
        help="do not check the broker's host name (test rigs only)",
    )


def _tls(args: argparse.Namespace) -> TlsSettings | None:
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    return TlsSettings(args.tls_ca, args.tls_cert, args.tls_key, args.tls_insecure)


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
    if not args.device_id:
        raise ConfigError("give the device id with --id (or TETHER_DEVICE_ID)")
    host, port = parse_broker(args.broker)
    journal = args.journal or Path(".tether") / "devices" / f"{args.device_id}.journal.sqlite3"
    settings = AgentSettings(
        args.device_id,
        host,
        port,
        username=args.username or args.device_id,
        password=args.password,
        prefix=args.prefix,
        mqtt_version=MqttVersion(args.mqtt_version),
        keepalive=args.keepalive,
        tls=_tls(args),
        journal_path=journal.resolve(),
        journal_keep=args.journal_size,
        event_buffer=args.event_buffer,
        event_policy=OverflowPolicy(args.event_policy),
        reconnect_cap=args.reconnect_max,
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
    host, port = parse_broker(args.broker)
    credentials = fleet_credentials(args, host, port)
    options = SimOptions(
        host=host,
        port=port,
        prefix=args.prefix,
        mqtt_version=MqttVersion(args.mqtt_version),
        keepalive=args.keepalive,
        latency=args.latency,
        failure_rate=args.failure_rate,
        disconnect_every=args.disconnect_every,
        event_every=args.event_every,
        connect_concurrency=args.connect_concurrency,
        report_every=args.report_every,
        seed=args.seed,
    )
    simulator = Simulator(options, credentials, report=print_report)
    asyncio.run(run_until_signalled(simulator, args.duration))
    return 0


def fleet_credentials(args: argparse.Namespace, host: str, port: int) -> list[DeviceCredentials]:
    count: int = args.count
    if count < 1:
        raise ConfigError("simulate at least one device")
    if args.provision:
        from broker_bridge.dynsec_admin import DynsecAdmin

        username, password = args.admin_username, args.admin_password
        if not username or not password:
            broker_dir = args.broker_dir or args.data_dir / "mosquitto"
            username, password = bridge_admin_credentials(broker_dir)
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
    env_flag(device, "--id", dest="device_id", env="DEVICE_ID", help="the device id")
    env_flag(
        device,
        "--username",
        env="DEVICE_USERNAME",
        default_text="the id",
        help="broker login, also the client id",
    )
    env_flag(
        device,
        "--password",
        env="DEVICE_PASSWORD",
        help="broker password; prefer the variable",
    )
    add_connection_flags(device)
    env_flag(
        device,
        "--journal",
        env="DEVICE_JOURNAL",
        type=Path,
        default_text=".tether/devices/<id>.journal.sqlite3",
        help="the command journal, SQLite",
    )
    env_flag(
        device,
        "--journal-size",
        env="JOURNAL_SIZE",
        type=int,
        default=10_000,
        help="command ids the journal keeps",
    )
    env_flag(
        device,
        "--handlers",
        env="DEVICE_HANDLERS",
        action="append",
        metavar="MODULE:ATTR",
        help="extra handlers: a HandlerRegistry or a function taking the agent; repeatable "
        "(the variable: comma-separated)",
    )
    env_flag(
        device,
        "--no-demo",
        env="DEVICE_NO_DEMO",
        action="store_true",
        help="leave out the demo commands (echo, sleep, fail, set_config, get_config, reboot)",
    )
    env_flag(
        device,
        "--event-buffer",
        env="EVENT_BUFFER",
        type=int,
        default=1000,
        help="events kept while offline",
    )
    env_flag(
        device,
        "--event-policy",
        env="EVENT_POLICY",
        choices=[p.value for p in OverflowPolicy],
        default=OverflowPolicy.DROP_OLDEST.value,
        help="what goes when the event buffer is full",
    )
    env_flag(
        device,
        "--reconnect-max",
        env="RECONNECT_MAX",
        type=float,
        default=60.0,
        help="cap of the reconnect backoff, seconds",
    )
    device.set_defaults(handler=cmd_device)

    sim = sub.add_parser("simulate", help="run N simulated devices in this one process")
    sim.add_argument("count", type=int, help="how many devices")
    add_connection_flags(sim)
    creds = sim.add_argument_group("credentials")
    env_flag(
        creds,
        "--credentials",
        env="SIM_CREDENTIALS",
        type=Path,
        help="JSON or CSV of id/username/password; with --provision, where to write the new ones",
    )
    env_flag(
        creds,
        "--provision",
        env="SIM_PROVISION",
        action="store_true",
        help="create the devices first (named ID_PREFIX00001...) with the broker's admin login",
    )
    env_flag(
        creds,
        "--id-prefix",
        env="SIM_ID_PREFIX",
        default="sim-",
        help="prefix of the numbered device ids",
    )
    env_flag(
        creds,
        "--admin-username",
        env="ADMIN_USERNAME",
        default_text="the broker dir's bridge-credentials.json",
        help="dynamic-security admin",
    )
    env_flag(
        creds,
        "--admin-password",
        env="ADMIN_PASSWORD",
        default_text="the broker dir's bridge-credentials.json",
        help="dynamic-security admin's password; prefer the variable",
    )
    add_data_dir_flags(creds)
    knobs = sim.add_argument_group("behaviour")
    env_flag(
        knobs,
        "--latency",
        env="SIM_LATENCY",
        type=float,
        default=0.05,
        help="mean handler latency in seconds, uniform in [0, 2x]",
    )
    env_flag(
        knobs,
        "--failure-rate",
        env="SIM_FAILURE_RATE",
        type=float,
        default=0.0,
        help="chance a command fails with 'simulated failure' (0..1)",
    )
    env_flag(
        knobs,
        "--disconnect-every",
        env="SIM_DISCONNECT_EVERY",
        type=float,
        default=0.0,
        default_text="0: never",
        help="mean seconds between random connection drops, per device",
    )
    env_flag(
        knobs,
        "--event-every",
        env="SIM_EVENT_EVERY",
        type=float,
        default=0.0,
        default_text="0: never",
        help="mean seconds between heartbeat events, per device",
    )
    env_flag(
        knobs,
        "--connect-concurrency",
        env="SIM_CONNECT_CONCURRENCY",
        type=int,
        default=64,
        help="devices connecting at once",
    )
    env_flag(
        knobs,
        "--report-every",
        env="SIM_REPORT_EVERY",
        type=float,
        default=5.0,
        default_text="5; 0: milestones only",
        help="seconds between JSON stats lines on stdout",
    )
    env_flag(
        knobs,
        "--duration",
        env="SIM_DURATION",
        type=float,
        default=0.0,
        default_text="0: until SIGINT/SIGTERM",
        help="stop after this many seconds",
    )
    env_flag(knobs, "--seed", env="SIM_SEED", type=int, help="random seed, for repeatable runs")
    sim.set_defaults(handler=cmd_simulate)
