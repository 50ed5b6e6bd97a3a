"""Bench: provisioning through the REST API (``POST /api/devices``), as the fleet grows.

Its own Mosquitto, a bridge worker and a gateway; ``tether_cli.fleet.provision_fleet`` with
``--workers`` parallel HTTP connections provisions ``sim-00001``… until ``--devices`` are done or
``--budget`` seconds have passed (bounded: it is slow). Reports the rate per block of ``--block``
devices, which shows how the cost of one provisioning grows with the number of devices already
provisioned (each creates a dynamic-security client and role in Mosquitto, which rewrites its whole
JSON file every time).

    .venv/bin/python bench/provision_rest.py [--devices 10000] [--budget 120]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from typing import Any

import httpx
from _common import ADMIN_TOKEN, CpuMeter, Harness, emit, log, machine_facts, raise_nofile

from tether_cli.fleet import numbered_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--block", type=int, default=500)
    args = parser.parse_args()
    raise_nofile()
    result: dict[str, Any] = {
        "bench": "provision_rest",
        "machine": machine_facts(),
        "workers": args.workers,
    }
    with Harness("provision") as h:
        broker = h.broker()
        server = h.server(broker)
        ids = numbered_ids(args.devices, "sim-")
        done_at: list[float] = []
        lock = threading.Lock()
        stop = threading.Event()
        t0 = time.monotonic()
        meter = CpuMeter({**server.pids, "mosquitto": broker.pid, "loadgen": os.getpid()})
        meter.start()

        def worker(chunk: list[str]) -> None:
            with httpx.Client(
                base_url=server.url,
                timeout=120,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as api:
                for device_id in chunk:
                    if stop.is_set():
                        return
                    r = api.post("/api/devices", json={"id": device_id})
                    if r.status_code != 201:
                        log(f"{device_id}: HTTP {r.status_code} {r.text[:100]}")
                        continue
                    with lock:
                        done_at.append(time.monotonic() - t0)

        threads = [
            threading.Thread(target=worker, args=(ids[i :: args.workers],), daemon=True)
            for i in range(args.workers)
        ]
        for t in threads:
            t.start()
        logged = 0
        while any(t.is_alive() for t in threads):
            if time.monotonic() - t0 > args.budget:
                stop.set()
            time.sleep(0.5)  # waiting for the workers, with a time budget
            with lock:
                n = len(done_at)
            if n // 1000 > logged:
                logged = n // 1000
                log(f"{n} provisioned after {time.monotonic() - t0:.0f} s")
        for t in threads:
            t.join(130)
        cpu = meter.stop()
        done_at.sort()
        blocks = []
        for start in range(0, len(done_at), args.block):
            part = done_at[start : start + args.block]
            begin = done_at[start - 1] if start else 0.0
            if len(part) == args.block:
                blocks.append(
                    {
                        "devices": f"{start + 1}-{start + len(part)}",
                        "per_second": round(len(part) / (part[-1] - begin), 1),
                    }
                )
        elapsed = done_at[-1] if done_at else 0.0
        result.update(
            provisioned=len(done_at),
            seconds=round(elapsed, 1),
            per_second=round(len(done_at) / elapsed, 1) if elapsed else None,
            stopped_by_budget=stop.is_set(),
            blocks=blocks,
            cpu=cpu,
            broker_dynsec_file_kib=round(broker.settings.dynsec_path.stat().st_size / 1024),
        )
        log(f"{len(done_at)} provisioned in {elapsed:.1f} s; blocks {blocks}")
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
