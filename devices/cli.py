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
from devices.errors import ConfigError, DeviceError
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
from tether.flags import env_default

log = logging.getLogger(__name__)

DEFAULT_MQTT_PORT = 18830  # `tether broker`'s default, clear of a system broker on 1883


def _default_broker() -> str:
    host = env_default("MQTT_HOST", "127.0.0.1")
    port = env_default("MQTT_PORT", str(DEFAULT_MQTT_PORT))
    return env_default("BROKER") or f"{host}:{port}"


def _float_env(name: str, fallback: float) -> float:
    value = env_default(name)
    return float(value) if value else fallback


def _int_env(name: str, fallback: int) -> int:
    value = env_default(name)
    return int(value) if value else fallback


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--broker",
        default=_default_broker(),
        help="the broker as host:port (TETHER_BROKER; default TETHER_MQTT_HOST:TETHER_MQTT_PORT "
        f"or 127.0.0.1:{DEFAULT_MQTT_PORT})",
    )
    group.add_argument(
        "--prefix", default=env_default("PREFIX", "tether"), help="topic prefix (TETHER_PREFIX)"
    )
    group.add_argument(
        "--mqtt-version",
        choices=[v.value for v in MqttVersion],
        default=env_default("MQTT_VERSION", MqttVersion.V5.value),
        help="MQTT protocol version (TETHER_MQTT_VERSION, default 5)",
    )
    group.add_argument(
        "--keepalive",
        type=int,
        default=_int_env("KEEPALIVE", 25),
        help="keepalive seconds, at most 25 (TETHER_KEEPALIVE, default 25)",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=env_default("TLS", "") in ("1", "true", "yes"),
        help="connect over TLS (TETHER_TLS=1)",
    )
    group.add_argument(
        "--tls-ca", default=env_default("TLS_CA"), help="CA file (TETHER_TLS_CA; default: system)"
    )
    group.add_argument("--tls-cert", default=env_default("TLS_CERT"), help="client certificate")
    group.add_argument("--tls-key", default=env_default("TLS_KEY"), help="client key")
    group.add_argument(
        "--tls-insecure",
        action="store_true",
        help="do not check the broker's host name (test rigs only)",
    )


def _tls(args: argparse.Namespace) -> TlsSettings | None:
    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    return TlsSettings(args.tls_ca, args.tls_cert, args.tls_key, args.tls_insecure)


# tether device


def cmd_device(args: argparse.Namespace) -> int:
    try:
        agent = build_agent(args)
    except (DeviceError, ValueError, ImportError) as exc:
        print(f"tether device: {exc}", file=sys.stderr)
        return 2
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
    try:
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
    except (DeviceError, ValueError, ConnectionError, TimeoutError) as exc:
        print(f"tether simulate: {exc}", file=sys.stderr)
        return 2
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
        raise ConfigError(f"{args.credentials} holds {len(creds)} devices, fewer than {count}")
    return creds[:count]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    device = sub.add_parser("device", help="run the device agent for one device")
    device.add_argument(
        "--id",
        dest="device_id",
        default=env_default("DEVICE_ID"),
        help="the device id (TETHER_DEVICE_ID)",
    )
    device.add_argument(
        "--username",
        default=env_default("DEVICE_USERNAME"),
        help="broker login, also the client id (TETHER_DEVICE_USERNAME, default: the id)",
    )
    device.add_argument(
        "--password",
        default=env_default("DEVICE_PASSWORD"),
        help="broker password (TETHER_DEVICE_PASSWORD; prefer the variable)",
    )
    add_connection_flags(device)
    device.add_argument(
        "--journal",
        type=Path,
        default=Path(p) if (p := env_default("DEVICE_JOURNAL")) else None,
        help="the command journal, SQLite (TETHER_DEVICE_JOURNAL, "
        "default .tether/devices/<id>.journal.sqlite3)",
    )
    device.add_argument(
        "--journal-size",
        type=int,
        default=_int_env("JOURNAL_SIZE", 10_000),
        help="command ids the journal keeps (TETHER_JOURNAL_SIZE, default 10000)",
    )
    device.add_argument(
        "--handlers",
        action="append",
        default=[h for h in (env_default("DEVICE_HANDLERS") or "").split(",") if h],
        metavar="MODULE:ATTR",
        help="extra handlers: a HandlerRegistry or a function taking the agent; repeatable "
        "(TETHER_DEVICE_HANDLERS, comma-separated)",
    )
    device.add_argument(
        "--no-demo",
        action="store_true",
        help="leave out the demo commands (echo, sleep, fail, set_config, get_config, reboot)",
    )
    device.add_argument(
        "--event-buffer",
        type=int,
        default=_int_env("EVENT_BUFFER", 1000),
        help="events kept while offline (TETHER_EVENT_BUFFER, default 1000)",
    )
    device.add_argument(
        "--event-policy",
        choices=[p.value for p in OverflowPolicy],
        default=env_default("EVENT_POLICY", OverflowPolicy.DROP_OLDEST.value),
        help="what goes when the event buffer is full (default drop_oldest)",
    )
    device.add_argument(
        "--reconnect-max",
        type=float,
        default=_float_env("RECONNECT_MAX", 60.0),
        help="cap of the reconnect backoff, seconds (TETHER_RECONNECT_MAX, default 60)",
    )
    device.set_defaults(handler=cmd_device)

    sim = sub.add_parser("simulate", help="run N simulated devices in this one process")
    sim.add_argument("count", type=int, help="how many devices")
    add_connection_flags(sim)
    creds = sim.add_argument_group("credentials")
    creds.add_argument(
        "--credentials",
        type=Path,
        default=Path(p) if (p := env_default("SIM_CREDENTIALS")) else None,
        help="JSON or CSV of id/username/password (TETHER_SIM_CREDENTIALS); with --provision, "
        "where to write the new ones",
    )
    creds.add_argument(
        "--provision",
        action="store_true",
        help="create the devices first (named ID_PREFIX00001...) with the broker's admin login",
    )
    creds.add_argument("--id-prefix", default=env_default("SIM_ID_PREFIX", "sim-"))
    creds.add_argument(
        "--admin-username",
        default=env_default("ADMIN_USERNAME"),
        help="dynamic-security admin (TETHER_ADMIN_USERNAME; default: the broker dir's "
        "bridge-credentials.json)",
    )
    creds.add_argument("--admin-password", default=env_default("ADMIN_PASSWORD"))
    creds.add_argument(
        "--data-dir",
        type=Path,
        default=Path(env_default("DATA_DIR", ".tether") or ".tether"),
        help="the stack's data dir, to find DATA_DIR/mosquitto/bridge-credentials.json",
    )
    creds.add_argument(
        "--broker-dir",
        type=Path,
        default=Path(p) if (p := env_default("BROKER_DIR")) else None,
        help="the broker's directory, if not DATA_DIR/mosquitto (TETHER_BROKER_DIR)",
    )
    knobs = sim.add_argument_group("behaviour")
    knobs.add_argument(
        "--latency",
        type=float,
        default=_float_env("SIM_LATENCY", 0.05),
        help="mean handler latency in seconds, uniform in [0, 2x] (default 0.05)",
    )
    knobs.add_argument(
        "--failure-rate",
        type=float,
        default=_float_env("SIM_FAILURE_RATE", 0.0),
        help="chance a command fails with 'simulated failure' (0..1, default 0)",
    )
    knobs.add_argument(
        "--disconnect-every",
        type=float,
        default=_float_env("SIM_DISCONNECT_EVERY", 0.0),
        help="mean seconds between random connection drops, per device (default 0: never)",
    )
    knobs.add_argument(
        "--event-every",
        type=float,
        default=_float_env("SIM_EVENT_EVERY", 0.0),
        help="mean seconds between heartbeat events, per device (default 0: never)",
    )
    knobs.add_argument(
        "--connect-concurrency",
        type=int,
        default=_int_env("SIM_CONNECT_CONCURRENCY", 64),
        help="devices connecting at once (default 64)",
    )
    knobs.add_argument(
        "--report-every",
        type=float,
        default=_float_env("SIM_REPORT_EVERY", 5.0),
        help="seconds between JSON stats lines on stdout (default 5; 0: milestones only)",
    )
    knobs.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="stop after this many seconds (default: run until SIGINT/SIGTERM)",
    )
    knobs.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    sim.set_defaults(handler=cmd_simulate)
