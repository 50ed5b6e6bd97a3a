"""Start and stop a Mosquitto process with Tether's config, for the stack, tests and benchmarks."""

from __future__ import annotations

import contextlib
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from mosquitto.config import BrokerConfigError, BrokerSettings, render_broker_files

INSTALL_HINT = (
    "Mosquitto is not installed: run `apt-get install mosquitto mosquitto-clients` "
    "(Debian/Ubuntu), or run the stack with `docker compose up`"
)


def _find_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux with glibc: no parent-death signal
        return None
    return prctl


_prctl = _find_prctl()


def die_with_parent() -> None:
    """Runs in a child before exec (Linux): SIGTERM it when its parent dies, so no orphan
    outlives even a SIGKILLed supervisor. Only for single-threaded parents (preexec_fn)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_mosquitto() -> str:
    for candidate in ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        path = shutil.which(candidate)
        if path:
            return path
    raise BrokerConfigError(INSTALL_HINT)


_LISTEN_PORTS = range(20000, 32000)  # below Linux's ephemeral range (32768-60999)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, outside the range the kernel hands to outgoing
    connections: a port from ``bind(0)`` can be taken by any client's connect before the
    server binds it, which under load (many tests at once) made servers fail to start."""
    for _ in range(200):
        port = random.choice(_LISTEN_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on the port (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def wait_for_port(
    host: str, port: int, deadline: float, exit_status: Callable[[], int | None] = lambda: None
) -> None:
    """Return once ``host:port`` accepts TCP connections; raise if the server exits or time ends."""
    while True:
        status = exit_status()
        if status is not None:
            raise BrokerConfigError(f"mosquitto exited with status {status} while starting")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            raise BrokerConfigError(
                f"mosquitto did not accept connections on {host}:{port} in time"
            )
        time.sleep(0.02)  # poll interval while waiting for the listener, not a wait for a result


class MosquittoProcess:
    """A Mosquitto child of this process; ``start()`` returns once it accepts connections."""

    def __init__(
        self,
        settings: BrokerSettings,
        admin_username: str,
        admin_password: str,
        log_path: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.die_with_parent = die_with_parent
        self.settings = settings
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.log_path = log_path or settings.data_dir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        binary = find_mosquitto()
        if port_in_use(self.settings.port, self.settings.bind_address):
            raise BrokerConfigError(
                f"port {self.settings.port} on {self.settings.bind_address} is already in use; "
                "choose another with --mqtt-port"
            )
        conf = render_broker_files(self.settings, self.admin_username, self.admin_password)
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        finally:
            log.close()
        try:
            wait_for_port(
                self.settings.bind_address,
                self.settings.port,
                time.monotonic() + timeout,
                self._proc.poll,
            )
        except BrokerConfigError as exc:
            self.kill()
            raise BrokerConfigError(f"{exc}; its log: {self.log_tail()}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Mosquitto saves its persistence file), SIGKILL if it does not exit in time."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: a crash, losing whatever was not autosaved."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> MosquittoProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
