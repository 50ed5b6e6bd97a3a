"""Bench: connect N simulated devices (default 10,000) to a local Mosquitto, from one process.

Starts its own Mosquitto (Tether's config, a free port, a temp directory), provisions N devices,
runs ``tether simulate N`` as a child process and prints one JSON object: time to connect them
all (from the simulator's own report and as the wall time from launching it), the broker's own
count of connected clients from ``$SYS``, a sample of command round trips through the fleet, and
the resident memory (VmRSS) of the simulator and of the broker.

Provisioning: ``--provision file`` (default) writes the devices into the dynamic-security file
before the broker starts; ``--provision dynsec`` creates them live through
``$CONTROL/dynamic-security/v1`` in batches, as the bridge would. Mosquitto 2.0.11 rewrites its
whole JSON file after every control command (two per device), so live provisioning grows
quadratically (about 40 s for 2,000 devices, about 170 s for 4,000 here) and is not the default
for 10,000. Either way the broker's resident memory is mostly the loaded dynamic-security data:
``broker_rss_mib_before_fleet`` is measured with every device provisioned and none connected.

    .venv/bin/python bench/simulator_connect.py [--devices 10000] [--hold 30]
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from broker_bridge.dynsec_admin import DynsecAdmin
from devices.provision import DeviceCredentials, save_credentials, sim_ids
from devices.simulator import raise_nofile_limit, rss_kib
from mosquitto import dynsec
from mosquitto.config import BrokerSettings, render_broker_files
from mosquitto.process import MosquittoProcess, free_port
from tether.netutil import set_tcp_nodelay
from tether.protocol import CommandMessage, decode_ack, new_command_id, utc_now
from tether_cli.dynsec_fleet import provision
from tether_cli.paho_tuning import share_property_tables

PREFIX = "tether"
ADMIN = "tether-bridge"


def peak_rss_kib(pid: int) -> int:
    """VmHWM: the most this process has ever been resident, in KiB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def provision_file(settings: BrokerSettings, admin_password: str, ids: list[str]) -> list[Any]:
    """Write the devices into the dynamic-security file before the broker reads it."""
    render_broker_files(settings, ADMIN, admin_password)
    document = json.loads(settings.dynsec_path.read_text())
    creds = []
    for device_id in ids:
        password = secrets.token_urlsafe(18)
        role = dynsec.device_role_name(device_id)
        document["roles"].append(
            {"rolename": role, "acls": dynsec.device_role_acls(PREFIX, device_id)}
        )
        document["clients"].append(
            {
                "username": device_id,
                "clientid": device_id,
                "textName": f"Tether device {device_id}",
                "roles": [{"rolename": role}],
                **dynsec.hash_password(password),
            }
        )
        creds.append(DeviceCredentials(device_id, device_id, password))
    settings.dynsec_path.write_text(json.dumps(document))
    return creds


class Observer:
    """The admin login: watches ``$SYS`` and the fleet's acks, publishes sample commands."""

    def __init__(self, port: int, password: str) -> None:
        self.connected_clients = -1
        self.acks: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-{secrets.token_hex(4)}"
        )
        self.client.username_pw_set(ADMIN, password)
        self.client.on_socket_open = lambda _c, _u, sock: set_tcp_nodelay(sock)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=20)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("observer could not connect")

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        client.subscribe([("$SYS/broker/clients/connected", 0), (f"{PREFIX}/+/ack", 1)])
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.startswith("$SYS"):
            self.connected_clients = int(msg.payload)
        else:
            self.acks.put((time.monotonic(), bytes(msg.payload)))

    def wait_broker_count(self, at_least: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.connected_clients < at_least and time.monotonic() < deadline:
            time.sleep(0.2)  # $SYS is published every sys_interval (2 s): poll the last value
        return self.connected_clients

    def round_trips(self, ids: list[str], count: int) -> dict[str, Any]:
        """Send ``echo`` to ``count`` random devices, one at a time; time publish → final ack."""
        times = []
        for device_id in random.sample(ids, min(count, len(ids))):
            command_id = new_command_id()
            sent = time.monotonic()
            payload = CommandMessage(command_id, "echo", utc_now(), {"n": 1}).encode()
            self.client.publish(f"{PREFIX}/{device_id}/cmd", payload, qos=1)
            deadline = sent + 10
            while time.monotonic() < deadline:
                try:
                    at, raw = self.acks.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                ack = decode_ack(raw)
                if ack.id == command_id and ack.status.is_final:
                    times.append((at - sent) * 1000)
                    break
        times.sort()
        return {
            "sent": count,
            "answered": len(times),
            "p50_ms": round(statistics.median(times), 2) if times else None,
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 2) if times else None,
        }

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def main() -> int:
    share_property_tables()  # a program: it opts in as `tether`'s main does
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--provision", choices=["file", "dynsec"], default="file")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds to stay connected")
    parser.add_argument("--samples", type=int, default=200, help="echo round trips to time")
    parser.add_argument("--connect-concurrency", type=int, default=64)
    args = parser.parse_args()

    nofile = raise_nofile_limit()  # the broker inherits it: it needs a descriptor per device
    work = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    admin_password = secrets.token_urlsafe(18)
    settings = BrokerSettings(port=free_port(), data_dir=work / "mosquitto")
    ids = sim_ids(args.devices)
    result: dict[str, Any] = {"devices": args.devices, "nofile_limit": nofile}

    t0 = time.monotonic()
    if args.provision == "file":
        creds = provision_file(settings, admin_password, ids)
    broker = MosquittoProcess(settings, ADMIN, admin_password)
    broker.start(timeout=60)
    sim: subprocess.Popen[str] | None = None
    observer: Observer | None = None
    try:
        if args.provision == "dynsec":
            with DynsecAdmin(
                "127.0.0.1", settings.port, ADMIN, admin_password, timeout=600
            ) as admin:
                creds = provision(admin.execute, ids, prefix=PREFIX)
        result["provision"] = {"mode": args.provision, "seconds": round(time.monotonic() - t0, 1)}
        credentials = work / "fleet.json"
        save_credentials(credentials, creds)
        observer = Observer(settings.port, admin_password)
        broker_rss_idle = rss_kib(broker.pid or 0)

        launched = time.monotonic()
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether_cli",
                "simulate",
                str(args.devices),
                "--credentials",
                str(credentials),
                "--broker",
                f"127.0.0.1:{settings.port}",
                "--report-every",
                "0",
                "--connect-concurrency",
                str(args.connect_concurrency),
                "--latency",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert sim.stdout is not None
        report: dict[str, Any] = {}
        for line in sim.stdout:
            record = json.loads(line)
            if record.get("type") == "all_connected":
                report = record
                break
        if not report:
            raise RuntimeError(f"the simulator exited ({sim.wait()}) before connecting them all")
        wall = time.monotonic() - launched
        result["connect_all"] = {
            "seconds_simulator": report["seconds"],
            "seconds_wall_from_launch": round(wall, 2),
            "simulator_rss_mib": round(report["rss_kib"] / 1024, 1),
        }
        result["broker_connected_clients"] = observer.wait_broker_count(args.devices + 1, 15) - 1
        time.sleep(args.hold)  # stay connected across keepalives: the hold is the test
        result["after_hold"] = {
            "seconds": args.hold,
            "broker_connected_clients": observer.wait_broker_count(args.devices + 1, 15) - 1,
            "simulator_rss_mib": round(rss_kib(sim.pid) / 1024, 1),
            "broker_rss_mib": round(rss_kib(broker.pid or 0) / 1024, 1),
            "broker_rss_mib_before_fleet": round(broker_rss_idle / 1024, 1),
            "broker_peak_rss_mib": round(peak_rss_kib(broker.pid or 0) / 1024, 1),
        }
        result["echo_round_trips"] = observer.round_trips(ids, args.samples)
    finally:
        if observer is not None:
            observer.close()
        if sim is not None:
            sim.terminate()
            try:
                out, _ = sim.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                sim.kill()
                out, _ = sim.communicate()
            stopped = [json.loads(line) for line in out.splitlines() if '"stopped"' in line]
            if stopped:
                result["simulator_final"] = stopped[-1]
        broker.stop()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
