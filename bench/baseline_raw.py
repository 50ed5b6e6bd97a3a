"""Bench: the raw baseline, a QoS 1 command/ack round trip through the same Mosquitto.

Its own Mosquitto with Tether's config (dynamic security, persistence, ``set_tcp_nodelay``) on a
free port; N device logins written into the dynamic-security file. The devices are plain paho
clients in another process (``_raw_devices.py``: persistent MQTT 5 sessions, answer at once);
the controller is one plain paho client in this process (MQTT 5, max_inflight 1000 and Receive
Maximum 1000 like the bridge, TCP_NODELAY) that publishes ``tether/{id}/cmd`` QoS 1 on an open-loop
schedule and reads ``tether/+/ack``. No store, no WebSocket, no gateway.

The same rate ladder and the same "sustained" rule as ``e2e_ws.py``, so Tether's figures can be
read as ratios of these. CPU per command (``cpu_per_command.raw_ms``) counts the controller and
the broker from the first publish until every ack is in (or the drain deadline).

    .venv/bin/python bench/baseline_raw.py [--devices 1000] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from _common import (
    ADMIN_USER,
    ROOT,
    CpuMeter,
    Harness,
    cpu_per_command,
    device_ids,
    emit,
    log,
    machine_facts,
    raise_nofile,
    save_creds,
    summarize_ms,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mosquitto.process import die_with_parent
from tether.netutil import set_tcp_nodelay

now = time.perf_counter


class Controller:
    def __init__(self, port: int, password: str) -> None:
        self.acks: dict[int, float] = {}
        self.dups = 0
        self.connack_props: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-ctl-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        c.username_pw_set(ADMIN_USER, password)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.on_socket_open = lambda _c, _u, sock: set_tcp_nodelay(sock)
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a: self._ready.set()
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = 1000
        props.SessionExpiryInterval = 0
        c.connect("127.0.0.1", port, keepalive=25, clean_start=True, properties=props)
        c.loop_start()
        self.client = c
        if not self._ready.wait(15):
            raise RuntimeError("controller did not connect")

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if props is not None:
            self.connack_props = {
                k: getattr(props, k)
                for k in ("ReceiveMaximum", "TopicAliasMaximum", "MaximumPacketSize")
                if hasattr(props, k)
            }
        c.subscribe("tether/+/ack", qos=1)

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        at = now()
        ref = json.loads(msg.payload)["id"]
        with self._lock:
            if ref in self.acks:
                self.dups += 1
            else:
                self.acks[ref] = at

    def step(
        self, first: int, count: int, rate: float, devices: list[str], drain: float
    ) -> dict[str, Any]:
        refs = range(first, first + count)
        sched: dict[int, float] = {}
        sent: dict[int, float] = {}
        with self._lock:
            dup0 = self.dups
        publish = self.client.publish
        nd = len(devices)
        start = now() + 0.02
        i = 0
        max_lag = 0.0
        while i < count:
            due = min(count, int((now() - start) * rate) + 1)
            while i < due:
                ref = first + i
                s = start + i / rate
                sched[ref] = s
                payload = f'{{"id":{ref},"name":"echo","args":{{"r":{ref}}}}}'
                publish(f"tether/{devices[ref % nd]}/cmd", payload, qos=1)
                t = now()
                sent[ref] = t
                max_lag = max(max_lag, t - s)
                i += 1
            if i < count:
                delay = start + i / rate - now()
                if delay > 0:
                    time.sleep(delay)
        last_sent = now()
        deadline = last_sent + drain
        while now() < deadline:
            with self._lock:
                if all(r in self.acks for r in refs):
                    break
            time.sleep(0.02)  # polling the ack table until the drain deadline
        with self._lock:
            got = {r: self.acks[r] for r in refs if r in self.acks}
            dups = self.dups - dup0
        lat = [got[r] - sched[r] for r in refs if r in got]
        lat_actual = [got[r] - sent[r] for r in refs if r in got]
        last_done = max(got.values()) if got else 0
        span = last_done - start if got else 0
        first_sent, final_sent = sent[first], sent[first + count - 1]
        rep = {
            "offered_rate": rate,
            "planned": count,
            "sent": count,
            "send_seconds": round(final_sent - first_sent, 3),
            "achieved_send_rate": round((count - 1) / (final_sent - first_sent), 1)
            if count > 1
            else None,
            "max_send_lag_ms": round(max_lag * 1000, 2),
            "acked": len(got),
            "lost": count - len(got),
            "duplicate_acks": dups,
            "completion_rate": round(len(got) / span, 1) if span > 0 else None,
            "latency_from_schedule": summarize_ms(lat),
            "latency_from_actual_send": summarize_ms(lat_actual),
        }
        rep["sustained"] = bool(
            rep["lost"] == 0
            and dups == 0
            and (rep["achieved_send_rate"] or 0) >= 0.97 * rate
            and (rep["completion_rate"] or 0) >= 0.95 * rate
        )
        return rep

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def brief(s: dict[str, Any]) -> str:
    lat = s["latency_from_schedule"]
    return (
        f"rate {s['offered_rate']:>7}/s p50 {lat.get('p50_ms')} p99 {lat.get('p99_ms')} ms "
        f"lost {s['lost']} dup {s['duplicate_acks']} send {s['achieved_send_rate']}/s "
        f"compl {s['completion_rate']}/s sustained {s['sustained']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[100, 200, 500, 1000]
    )
    parser.add_argument(
        "--search",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[2000, 3000, 4000, 6000, 8000, 12000, 16000],
    )
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--drain", type=float, default=15.0)
    parser.add_argument("--bisect", type=int, default=2)
    parser.add_argument("--max-others", type=float, default=0.35)
    parser.add_argument("--contention-retries", type=int, default=2)
    parser.add_argument(
        "--broker-inflight",
        type=int,
        default=None,
        help="experiment: run the broker with this max_inflight_messages instead of the shipped 20",
    )
    args = parser.parse_args()
    raise_nofile()
    result: dict[str, Any] = {
        "bench": "baseline_raw",
        "machine": machine_facts(),
        "devices": args.devices,
    }
    ids = device_ids(args.devices)
    with Harness("raw") as h:
        broker = h.broker(file_devices=ids, inflight=args.broker_inflight)
        result["broker_max_inflight_messages"] = args.broker_inflight or "20 (shipped)"
        creds = save_creds(h.work / "fleet.json", broker.credentials)
        dev = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "_raw_devices.py"), str(creds), str(broker.port)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            preexec_fn=die_with_parent,
        )

        def stop_devices() -> None:
            if dev.poll() is None:
                dev.terminate()
                try:
                    dev.wait(30)
                except subprocess.TimeoutExpired:
                    dev.kill()

        h.callback(stop_devices)
        assert dev.stdout is not None
        t0 = time.monotonic()
        line = dev.stdout.readline()
        if '"ready"' not in line:
            raise RuntimeError(f"raw devices did not start: {line!r}")
        result["devices_ready_seconds"] = round(time.monotonic() - t0, 2)
        ctl = Controller(broker.port, broker.admin_password)
        h.callback(ctl.close)
        result["broker_connack"] = ctl.connack_props
        meter_pids = {"mosquitto": broker.pid, "devices": dev.pid, "controller": os.getpid()}
        next_ref = 1

        def run(rate: float) -> dict[str, Any]:
            """One step; repeated (at most twice) if other processes used more than
            ``--max-others`` cores meanwhile, as in e2e_ws.py."""
            nonlocal next_ref
            discarded = []
            for attempt in range(1 + args.contention_retries):
                count = max(1, int(rate * args.duration))
                meter = CpuMeter(meter_pids)
                meter.start()
                rep = ctl.step(next_ref, count, rate, ids, args.drain)
                rep["cpu"] = meter.stop()
                rep["cpu_per_command"] = cpu_per_command(
                    rep["cpu"], rep["acked"], {"raw": ["controller", "mosquitto"]}
                )
                next_ref += count
                others = rep["cpu"]["cores"]["others"]
                rep["others_cores"] = others
                log(
                    ("  " if others <= args.max_others else "  (contended) ")
                    + brief(rep)
                    + f" | cores {rep['cpu']['cores']}"
                )
                time.sleep(0.5)
                if others <= args.max_others or attempt == args.contention_retries:
                    break
                discarded.append({"others_cores": others, "sustained": rep["sustained"]})
                time.sleep(1.5)
            rep["contended_attempts_discarded"] = discarded
            return rep

        log("warm-up")
        result["warmup"] = run(100)
        fixed = [run(r) for r in args.rates]
        passed = [s["offered_rate"] for s in fixed if s["sustained"]]
        failed = [s["offered_rate"] for s in fixed if not s["sustained"]]
        search = []
        if not failed:
            for rate in args.search:
                s = run(rate)
                search.append(s)
                if s["sustained"]:
                    passed.append(rate)
                else:
                    failed.append(rate)
                    break
        for _ in range(args.bisect):
            if not failed:
                break
            low = max([r for r in passed if r < min(failed)], default=0)
            high = min(failed)
            if high - low <= max(50, 0.1 * high):
                break
            mid = round((low + high) / 2 / 50) * 50 or 50
            s = run(mid)
            search.append(s)
            (passed if s["sustained"] else failed).append(mid)
        best = max(passed, default=0)
        best_step = next(
            (s for s in fixed + search if s["offered_rate"] == best and s["sustained"]), None
        )
        result.update(
            fixed=fixed,
            search=search,
            max_sustained_rate=best,
            max_sustained_completion_rate=best_step["completion_rate"] if best_step else None,
            first_failed_rate=min(failed) if failed else None,
        )
        stop_devices()
        out = dev.stdout.read()
        for line in out.splitlines():
            if '"stopped"' in line:
                result["devices_final"] = json.loads(line)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
