"""``tether up``: the whole local stack under one supervisor.

Mosquitto (own config, own data directory), bridge workers (each owns shard groups of the
store), stateless gateways sharing the HTTP port, and optionally a simulated fleet provisioned
through the real API. A worker or gateway that dies is started again. Children get SIGTERM if
this process dies (Linux parent-death signal); Ctrl-C or SIGTERM stops them in reverse order.
Everything lives in the data directory, so running it again resumes: commands, broker
sessions, credentials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from broker_bridge.bridge import BridgeSettings
from broker_bridge.store.sharded import StoreConfigError, open_layout
from devices.simulator import SimOptions
from mosquitto.config import (
    BrokerConfigError,
    BrokerSettings,
    load_or_create_bridge_credentials,
    prepare_data_dir,
)
from mosquitto.process import MosquittoProcess, die_with_parent, port_in_use
from tether.credentials import new_secret
from tether.protocol.errors import TetherError
from tether.settings import setting
from tether.wording import plural
from tether_cli.datadir_lock import DataDirLock
from tether_cli.flags import default_of
from tether_cli.fleet import ProvisioningError, numbered_ids, provision_fleet
from tether_cli.options import ProvisionOptions
from ui_gateway.settings import GatewaySettings

ADMIN_TOKEN_FILE = "admin-token"
SIM_CREDENTIALS_FILE = "simulated-devices.json"


class StackError(TetherError, RuntimeError):
    """The local stack cannot start: a port in use, a child that died while starting."""


@dataclass(frozen=True, slots=True)
class StackSettings:
    """``tether up``'s own choices; the broker's, gateway's and bridge's defaults are theirs."""

    data_dir: Path
    mqtt_port: int = default_of(BrokerSettings, "port")
    mqtt_bind: str = default_of(BrokerSettings, "bind_address")
    http_host: str = default_of(GatewaySettings, "host")
    http_port: int = default_of(GatewaySettings, "port")
    shards: int | None = default_of(BridgeSettings, "shards")
    simulate: int = setting(
        0, metavar="N", help="also run N simulated devices, provisioned through the API"
    )
    sim_latency: float = setting(
        default_of(SimOptions, "latency"),
        help="mean handler latency of the simulated devices, seconds",
    )
    sim_failure_rate: float = setting(
        default_of(SimOptions, "failure_rate"),
        help="share of commands the simulated devices fail (0..1)",
    )
    sim_prefix: str = default_of(ProvisionOptions, "id_prefix")
    workers: int = setting(
        0,
        default_text="the cores, at most the shard groups",
        help="bridge worker processes (each owns shard groups of the store)",
    )
    gateways: int = setting(
        0, default_text="half the cores, at least 1", help="gateway processes on the HTTP port"
    )
    start_timeout: float = 60.0
    restart_limit: int = 5  # restarts of one child within a minute before giving up

    def worker_count(self, groups: int) -> int:
        return self.workers or max(1, min(os.cpu_count() or 1, groups))

    def gateway_count(self) -> int:
        return self.gateways or max(1, (os.cpu_count() or 1) // 2)


def _say(text: str) -> None:
    print(text, flush=True)


def load_or_create_admin_token(data_dir: Path) -> str:
    """``TETHER_ADMIN_TOKEN`` if set, else a token made once and kept (0600) in the data dir."""
    from_env = os.environ.get("TETHER_ADMIN_TOKEN")
    if from_env:
        return from_env
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def open_private_log(path: Path) -> IO[bytes]:
    """Open a log for appending, readable by its owner only (0600, also if it existed): logs
    carry device ids, addresses and, before redaction existed, tokens."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def prepare_logs_dir(logs: Path) -> None:
    """``logs/`` (0700) with every log file in it 0600, including ones an older version left."""
    logs.mkdir(mode=0o700, exist_ok=True)
    logs.chmod(0o700)
    for entry in logs.iterdir():
        if entry.is_file():
            entry.chmod(0o600)


class Child:
    """A supervised subprocess with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str],
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.name = name
        self.log_path = log_path
        log: IO[bytes] = open_private_log(log_path)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=die_with_parent,
                pass_fds=pass_fds,
            )
        finally:
            log.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Stack:
    def __init__(self, settings: StackSettings, lock: DataDirLock) -> None:
        """``lock`` holds ``settings.data_dir``: take it before anything touches the directory."""
        self.settings = settings
        self.lock = lock
        self.data_dir = settings.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.broker: MosquittoProcess | None = None
        self.children: list[Child] = []
        self.restarts: dict[str, list[float]] = {}
        self.token = ""
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def _step(self, n: int, total: int, text: str) -> float:
        print(f"[{n}/{total}] {text} ...", end=" ", flush=True)
        return time.monotonic()

    def _done(self, started: float, detail: str = "") -> None:
        print(
            f"ok ({time.monotonic() - started:.1f} s){' ' + detail if detail else ''}", flush=True
        )

    def up(self) -> None:
        s = self.settings
        total = 4 if s.simulate else 3
        try:
            prepare_data_dir(self.data_dir)
        except BrokerConfigError as exc:
            raise StackError(str(exc)) from None
        try:
            prepare_logs_dir(self.logs)
            open_private_log(self.logs / "mosquitto.log").close()  # Mosquitto's, 0600 too
        except OSError as exc:
            raise StackError(f"cannot prepare {self.logs}: {exc}") from None
        if port_in_use(s.http_port, s.http_host):
            raise StackError(
                f"HTTP port {s.http_port} is already in use; choose another with --http-port"
            )
        self.token = load_or_create_admin_token(self.data_dir)

        started = self._step(1, total, f"broker on {s.mqtt_bind}:{s.mqtt_port}")
        broker_dir = self.data_dir / "mosquitto"
        creds = load_or_create_bridge_credentials(broker_dir)
        self.broker = MosquittoProcess(
            BrokerSettings(port=s.mqtt_port, data_dir=broker_dir, bind_address=s.mqtt_bind),
            creds.username,
            creds.password,
            log_path=self.logs / "mosquitto.log",
            die_with_parent=True,
        )
        try:
            self.broker.start()
        except BrokerConfigError as exc:
            print("failed", flush=True)
            raise StackError(str(exc)) from None
        self._done(started, f"(pid {self.broker.pid})")

        groups = self._store_groups()
        workers, gateways = s.worker_count(groups), s.gateway_count()
        started = self._step(
            2,
            total,
            f"{plural(workers, 'bridge worker')} and {plural(gateways, 'gateway')} on {self.url}",
        )
        for index in range(workers):
            self._spawn(self._worker_argv(index, workers), f"worker-{index}")
        for index in range(gateways):
            self._spawn(self._gateway_argv(), f"gateway-{index}")
        self._wait_ready()
        self._done(started)

        step = 3
        if s.simulate:
            started = self._step(
                step,
                total,
                f"provisioning {plural(s.simulate, 'simulated device')} through the API",
            )
            credentials = self._provision_fleet()
            sim = Child(
                "simulator",
                [
                    sys.executable,
                    "-m",
                    "tether_cli",
                    "simulate",
                    str(s.simulate),
                    "--broker",
                    f"127.0.0.1:{s.mqtt_port}",
                    "--credentials",
                    str(credentials),
                    "--latency",
                    str(s.sim_latency),
                    "--failure-rate",
                    str(s.sim_failure_rate),
                ],
                self.logs / "simulator.log",
                {**os.environ, "TETHER_ADMIN_TOKEN": self.token},
            )
            self.children.append(sim)
            self._done(started)
            step += 1
            started = self._step(step, total, "waiting for the fleet to come online")
            self._wait_online(s.simulate, sim)
            self._done(started)
        else:
            started = self._step(step, total, "checking the stack")
            self._done(started)
        self._announce()

    def _store_groups(self) -> int:
        """The store's shard groups (made now for a new store, so every worker agrees)."""
        try:
            return open_layout(self.data_dir / "store", self.settings.shards)[1]
        except StoreConfigError as exc:
            print("failed", flush=True)
            raise StackError(str(exc)) from None

    def _common_argv(self, command: str) -> list[str]:
        s = self.settings
        argv = [sys.executable, "-m", "tether_cli", command, "--data-dir", str(self.data_dir)]
        argv += ["--mqtt-port", str(s.mqtt_port)]
        if s.shards is not None:
            argv += ["--shards", str(s.shards)]
        return argv

    def _worker_argv(self, index: int, workers: int) -> list[str]:
        worker = ["--worker-name", f"worker-{index}", "--worker-index", str(index)]
        return [*self._common_argv("bridge"), *worker, "--workers", str(workers)]

    def _gateway_argv(self) -> list[str]:
        s = self.settings
        http = ["--http-host", s.http_host, "--http-port", str(s.http_port)]
        return [*self._common_argv("gateway"), *http]

    def _spawn(self, argv: list[str], name: str) -> Child:
        env = {**os.environ, "TETHER_ADMIN_TOKEN": self.token}
        child = Child(name, argv, self.logs / f"{name}.log", env)
        self.children.append(child)
        self.restarts.setdefault(name, [])
        return child

    def _servers(self) -> list[Child]:
        return [c for c in self.children if c.name.startswith(("worker-", "gateway-"))]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        with httpx.Client(base_url=self.url, timeout=2) as client:
            while True:
                for child in self._servers():
                    if not child.alive():
                        print("failed", flush=True)
                        raise StackError(
                            f"{child.name} exited while starting; its log:\n{child.log_tail()}"
                        )
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    tails = "\n".join(f"{c.name}:\n{c.log_tail()}" for c in self._servers())
                    raise StackError(f"the stack was not ready in time; the logs:\n{tails}")
                time.sleep(0.1)  # polling readiness of child processes

    def _api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def _provision_fleet(self) -> Path:
        s = self.settings
        path = self.data_dir / SIM_CREDENTIALS_FILE
        with self._api() as api:
            try:
                provision_fleet(api, numbered_ids(s.simulate, s.sim_prefix), path, rotate=True)
            except (ProvisioningError, httpx.HTTPError) as exc:
                raise StackError(str(exc)) from None
        return path

    def _wait_online(self, count: int, sim: Child) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        with self._api() as api:
            while True:
                online = api.get("/api/fleet").json()["devices"]["online"]
                if online >= count:
                    return
                if not sim.alive():
                    raise StackError(f"the simulator exited; its log:\n{sim.log_tail()}")
                if time.monotonic() > deadline:
                    raise StackError(
                        f"only {online} of {plural(count, 'device')} came online in time"
                    )
                time.sleep(0.2)  # polling the fleet while it connects

    def _announce(self) -> None:
        s = self.settings
        example = f"{s.sim_prefix}00001" if s.simulate else "DEVICE"
        _say("")
        _say("Tether is up.")
        _say(f"  dashboard  {self.url}/#token={self.token}")
        _say(f"  token      {self.token}   (admin; kept in {self.data_dir / ADMIN_TOKEN_FILE})")
        _say(f"  broker     mqtt://{s.mqtt_bind}:{s.mqtt_port}")
        _say(f"  logs       {self.logs}")
        _say(
            f"  try        TETHER_URL={self.url} TETHER_TOKEN={self.token} "
            f"tether send {example} echo --args '{{\"hello\": 1}}' --wait"
        )
        _say("Ctrl-C stops everything.")

    def wait(self) -> int:
        """Until a signal (0), or a child that cannot be kept running dies (1). A worker or a
        gateway that dies is started again (its groups are meanwhile taken over by another
        worker, its clients served by another gateway); one that keeps dying stops the stack."""
        while not self._stop.wait(0.5):
            for child in list(self.children):
                if child.alive():
                    continue
                if child in self._servers() and self._may_restart(child.name):
                    _say(
                        f"tether: {child.name} exited ({child.proc.returncode}); starting it again"
                    )
                    self.children.remove(child)
                    self._spawn(child.proc.args, child.name)  # type: ignore[arg-type]
                    continue
                _say(
                    f"tether: {child.name} exited ({child.proc.returncode}); "
                    f"its log:\n{child.log_tail()}"
                )
                return 1
            if self.broker is not None and not self.broker.running:
                _say(f"tether: the broker exited; its log:\n{self.broker.log_tail()}")
                return 1
        return 0

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < 60]
        self.restarts[name] = [*recent, now]
        return len(recent) < self.settings.restart_limit

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def down(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


def run_up(settings: StackSettings) -> int:
    lock = DataDirLock.acquire(
        settings.data_dir, "up", mqtt_port=settings.mqtt_port, http_port=settings.http_port
    )
    with lock:
        return _run_locked(Stack(settings, lock))


def _run_locked(stack: Stack) -> int:
    signal.signal(signal.SIGTERM, stack.request_stop)
    signal.signal(signal.SIGINT, stack.request_stop)
    try:
        stack.up()
        code = stack.wait()
    except StackError as exc:
        print(f"\ntether up: {exc}", file=sys.stderr, flush=True)
        code = 2
    finally:
        _say("stopping ...")
        stack.down()
        _say("stopped.")
    return code
