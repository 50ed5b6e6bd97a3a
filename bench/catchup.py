"""Bench: catch-up. A device offline with 1,000 pending commands comes back; time until all of
them are terminal.

Its own Mosquitto, a bridge worker and a gateway; one device provisioned through the REST API;
``tether simulate 1`` connects it once (so the broker holds its persistent session), then stops (the
device says offline and disconnects). 1,000 ``echo`` commands are sent over the WebSocket and the
bench waits until every one is ``queued``: the device is known offline, so they wait in the store,
not in its broker session (issue 13), and the bridge publishes them, in order, when the device is
back. Then the simulator starts again and the clock runs until the 1,000th terminal event arrives on
the WebSocket. Measured from the simulator's launch and from the device's connect (its
``all_connected`` report); lost = not terminal within the deadline; duplicates = terminal events
seen twice, commands the device ran more than once (simulator counters), and redeliveries its
journal caught.

    .venv/bin/python bench/catchup.py [--commands 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import time
from typing import Any

from _common import CpuMeter, Harness, emit, log, machine_facts, raise_nofile
from _wsload import WsLoad


def published(server: Any) -> int | None:
    """The bridge's count of ``cmd`` publishes, from /metrics."""
    with server.api() as api:
        m = re.search(r'outcome="published"\} ([0-9.e+]+)', api.get("/metrics").text)
    return int(float(m.group(1))) if m else None


async def one_round(
    h: Harness,
    server: Any,
    broker: Any,
    creds: Any,
    device: str,
    n: int,
    first_ref: int,
    deadline: float,
) -> dict[str, Any]:
    client = WsLoad(server.ws_url, track_states=("queued",))
    await client.open()
    await asyncio.sleep(0.3)
    refs = range(first_ref, first_ref + n)
    send = await client.run_open_loop(first_ref, n, 2000.0, [device])
    all_sent = await client.wait_state("queued", refs, 60)
    accepted = sum(1 for r in refs if r in client.t.accepted)
    log(f"  {accepted}/{n} accepted, all held: {all_sent}, errors {len(client.t.errors)}")
    online_before = await asyncio.to_thread(server.online)
    published_before = await asyncio.to_thread(published, server)
    sim = h.simulator(creds, 1, broker, latency=0.0, report_every=1.0)
    meter = CpuMeter(
        {
            **server.pids,
            "mosquitto": broker.pid,
            "simulator": sim.pid,
            "loadgen": os.getpid(),
        }
    )
    meter.start()
    launched = sim.launched
    done = await client.wait_terminal(refs, deadline)
    t_end = time.perf_counter()
    cpu = meter.stop()
    connected = sim.wait_for(lambda r: r.get("type") == "all_connected", 5)
    t = client.t
    terminal_times = [t.terminal[r][0] for r in refs if r in t.terminal]
    last = max(terminal_times) if terminal_times else None
    # perf_counter (client) and monotonic (simulator reports) share CLOCK_MONOTONIC on Linux.
    states: dict[str, int] = {}
    for r in refs:
        if r in t.terminal:
            states[t.terminal[r][1]] = states.get(t.terminal[r][1], 0) + 1
    published_after = await asyncio.to_thread(published, server)
    stats = await asyncio.to_thread(sim.fresh_stats, 3.0)
    final = await asyncio.to_thread(sim.stop)
    final = final or stats or {}
    await client.close()
    rep = {
        "commands": n,
        "send": {k: v for k, v in send.items() if k != "start"},
        "accepted": accepted,
        "all_held_before_reconnect": all_sent,
        "online_before_reconnect": online_before,
        "all_terminal": done,
        "terminal": states,
        "lost": sum(1 for r in refs if r in t.accepted and r not in t.terminal),
        "duplicate_terminal_events": t.duplicate_terminal,
        "bridge_publishes_after_reconnect": published_after - published_before
        if published_after is not None and published_before is not None
        else None,
        "device_runs": final.get("commands"),
        "duplicate_runs": max(0, (final.get("commands") or 0) - n),
        "journal_caught_redeliveries": final.get("duplicates"),
        "seconds_from_simulator_launch": round(last - launched, 3) if last else None,
        "seconds_from_device_connected": round(last - connected[0], 3)
        if (last and connected)
        else None,
        "seconds_from_bridge_presence_online": round(last - t.presence_online_at, 3)
        if (last and t.presence_online_at)
        else None,
        "first_terminal_after_launch_s": round(min(terminal_times) - launched, 3)
        if terminal_times
        else None,
        "cpu": cpu,
        "waited_until": round(t_end - launched, 2),
        "ws_closed": client.closed,
    }
    return rep


async def run(
    args: argparse.Namespace, h: Harness, server: Any, broker: Any, creds: Any, device: str
) -> list[dict[str, Any]]:
    rounds = []
    for i in range(args.repeat):
        log(f"round {i + 1}: device offline, sending {args.commands} commands")
        rep = await one_round(
            h, server, broker, creds, device, args.commands, 1 + i * args.commands, args.deadline
        )
        log(
            f"  all terminal {rep['all_terminal']} in {rep['seconds_from_simulator_launch']} s "
            f"from launch, {rep['seconds_from_device_connected']} s from connect; lost "
            f"{rep['lost']}, runs {rep['device_runs']}, journal dups "
            f"{rep['journal_caught_redeliveries']}"
        )
        rounds.append(rep)
        await asyncio.sleep(1.0)
        if await asyncio.to_thread(server.online):
            await asyncio.sleep(2.0)  # let the offline status land before the next round
    return rounds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    raise_nofile()
    result: dict[str, Any] = {"bench": "catchup", "machine": machine_facts()}
    device = "catchup-1"
    with Harness("catchup") as h:
        broker = h.broker()
        server = h.server(broker)
        creds = h.work / "fleet.json"
        server.provision_rest([device], creds, workers=1)
        log("first connect, to create the device's persistent session")
        sim = h.simulator(creds, 1, broker, latency=0.0)
        if not sim.wait_all_connected(30) or server.wait_online(1, 30) is None:
            raise RuntimeError("the device did not come online")
        sim.stop()
        deadline = time.monotonic() + 15
        while server.online() and time.monotonic() < deadline:
            time.sleep(0.1)  # waiting for the offline status to be recorded
        rounds = asyncio.run(run(args, h, server, broker, creds, device))
    secs = [r["seconds_from_simulator_launch"] for r in rounds if r["all_terminal"]]
    secs_conn = [r["seconds_from_device_connected"] for r in rounds if r["all_terminal"]]
    result.update(
        commands=args.commands,
        rounds=rounds,
        all_rounds_complete=all(r["all_terminal"] for r in rounds),
        median_seconds_from_launch=round(statistics.median(secs), 3) if secs else None,
        median_seconds_from_connect=round(statistics.median(secs_conn), 3)
        if all(x is not None for x in secs_conn) and secs_conn
        else None,
        lost_total=sum(r["lost"] for r in rounds),
        duplicate_runs_total=sum(r["duplicate_runs"] for r in rounds),
    )
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
