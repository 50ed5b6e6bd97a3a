"""Bench: scale. 10,000 simulated devices connected at once to one broker and one bridge.

Its own Mosquitto (Tether's config; RLIMIT_NOFILE raised to the hard limit, inherited by every
child) with the 10,000 device logins written into its dynamic-security file before it starts,
and the same devices created in the command store directly (``jobs.create_device``) before the
workers open it: live provisioning through ``POST /api/devices`` is measured on its own by
``provision_rest.py`` because it is far too slow for 10,000 (see there). Then ``tether simulate
10000`` runs in its own process and the bench measures:

- time to connect them all (the simulator's own report, and wall time from its launch), and the
  time until the bridge has recorded every one online (``/api/fleet``);
- resident memory (VmRSS) of the bridge worker, the gateway, the broker and the simulator,
  before the fleet, after it connected, and after load;
- commands still flowing: open-loop WebSocket load at 200/s and 400/s spread over all 10,000
  devices (latency p50/p99, lost), while the fleet stays connected across keepalives.

    .venv/bin/python bench/scale_10k.py [--devices 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from _common import (
    CpuMeter,
    Harness,
    emit,
    log,
    machine_facts,
    raise_nofile,
    rss_mib,
    save_creds,
    seed_store,
)
from _wsload import WsLoad, sustained

from tether_cli.fleet import numbered_ids


async def load(
    server: Any, broker: Any, sim: Any, devices: list[str], rates: list[float], duration: float
) -> list[dict[str, Any]]:
    client = WsLoad(server.ws_url)
    await client.open()
    await asyncio.sleep(0.3)
    # Spread consecutive commands over the fleet: ref n goes to devices[n % N].
    steps = []
    ref = 1
    for rate in rates:
        n = int(rate * duration)
        refs = range(ref, ref + n)
        before = await asyncio.to_thread(sim.fresh_stats)
        meter = CpuMeter(
            {
                **server.pids,
                "mosquitto": broker.pid,
                "simulator": sim.pid,
                "loadgen": os.getpid(),
            }
        )
        meter.start()
        send = await client.run_open_loop(ref, n, rate, devices)
        cpu = meter.stop()
        await client.wait_terminal(refs, 20)
        rep = client.step_report(refs, send, rate)
        rep["planned"] = n
        rep["cpu_during_send"] = cpu
        after = await asyncio.to_thread(sim.fresh_stats)
        if before and after:
            rep["device_runs"] = after["commands"] - before["commands"]
            rep["duplicate_runs"] = max(0, rep["device_runs"] - rep["accepted"])
        rep["sustained"] = sustained(rep)
        lat = rep["latency_from_schedule"]
        log(
            f"  {rate}/s over {len(devices)} devices: p50 {lat.get('p50_ms')} p99 "
            f"{lat.get('p99_ms')} ms, lost {rep['lost']}, errors {rep['errors']}, "
            f"sustained {rep['sustained']}"
        )
        steps.append(rep)
        ref += n
        if client.closed is not None:
            await client.close()
            client = WsLoad(server.ws_url)
            await client.open()
    await client.close()
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument(
        "--rates", type=lambda s: [float(x) for x in s.split(",")], default=[200.0, 400.0]
    )
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument(
        "--hold",
        type=float,
        default=30.0,
        help="seconds the fleet must stay connected (load included)",
    )
    parser.add_argument("--connect-concurrency", type=int, default=64)
    args = parser.parse_args()
    nofile = raise_nofile()
    result: dict[str, Any] = {
        "bench": "scale_10k",
        "machine": machine_facts(),
        "devices": args.devices,
        "nofile_limit": nofile,
    }
    ids = numbered_ids(args.devices, "sim-")
    with Harness("scale") as h:
        t0 = time.monotonic()
        broker = h.broker(file_devices=ids)
        result["broker_start_with_file_devices_s"] = round(time.monotonic() - t0, 2)
        creds = save_creds(h.work / "fleet.json", broker.credentials)
        result["store_seed_s"] = round(seed_store(h.work, ids), 2)
        server = h.server(broker)
        rss: dict[str, Any] = {
            "before_fleet": {**server.rss_mib(), "mosquitto": rss_mib(broker.pid)}
        }
        log(
            f"broker :{broker.port} and gateway :{server.port} up; launching {args.devices} "
            "simulated devices"
        )
        sim = h.simulator(
            creds,
            args.devices,
            broker,
            latency=0.0,
            report_every=1.0,
            connect_concurrency=args.connect_concurrency,
        )
        meter = CpuMeter({**server.pids, "mosquitto": broker.pid, "simulator": sim.pid})
        meter.start()
        connected = sim.wait_all_connected(240)
        wall = time.monotonic() - sim.launched
        online_after = server.wait_online(args.devices, 180)
        bridge_wall = time.monotonic() - sim.launched
        result["connect"] = {
            "all_connected": bool(connected),
            "simulator_seconds": connected and connected["seconds"],
            "wall_seconds_from_launch": round(wall, 2),
            "bridge_all_online_seconds_from_launch": round(bridge_wall, 2)
            if online_after is not None
            else None,
            "cpu": meter.stop(),
        }
        log(f"connected: {result['connect']}")
        rss["after_connect"] = {
            **server.rss_mib(),
            "mosquitto": rss_mib(broker.pid),
            "simulator": rss_mib(sim.pid),
        }
        if not connected or online_after is None:
            result["error"] = "the fleet did not come online"
            result["rss_mib"] = rss
            emit(result)
            return 1
        hold_start = time.monotonic()
        result["load"] = asyncio.run(load(server, broker, sim, ids, args.rates, args.duration))
        left = args.hold - (time.monotonic() - hold_start)
        if left > 0:
            time.sleep(left)  # the hold is the test: keepalives must keep every device connected
        stats = sim.fresh_stats()
        result["after_hold"] = {
            "seconds": round(time.monotonic() - hold_start, 1),
            "simulator_connected": stats and stats["connected"],
            "simulator_disconnects": stats and stats["disconnects"],
            "bridge_online": server.online(),
        }
        rss["after_load"] = {
            **server.rss_mib(),
            "mosquitto": rss_mib(broker.pid),
            "simulator": rss_mib(sim.pid),
        }
        result["rss_mib"] = rss
        final = sim.stop()
        if final:
            result["simulator_final"] = final
        result["broker_dropped_warnings"] = broker.log_lines("are being dropped")[:20]
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
