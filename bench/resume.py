"""Bench: resume. A WebSocket client reconnects with a cursor 10,000 events back; how fast are the
events replayed?

Its own Mosquitto, a bridge worker and a gateway, 20 devices provisioned through the REST API and
simulated (``--latency 0``). A live WebSocket client records every event (cursor and data) while
``--commands`` echo commands run to completion (four command events each). Then a new WebSocket
connects with ``?last_event_id=<cursor of the event 10,000 from the end>`` and the bench times the
arrival of the 10,000 events after it; it checks the replay is exact (the same 10,000 event
payloads, none missing, none twice). A server that closes the connection (1013: too slow) is resumed
from the last cursor received, as a client should; such reconnects are counted. The same replay is
timed over SSE (``GET /api/events`` with ``Last-Event-ID``) for comparison.

    .venv/bin/python bench/resume.py [--back 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import time
from typing import Any

import httpx
from _common import ADMIN_TOKEN, CpuMeter, Harness, emit, log, machine_facts, raise_nofile
from _wsload import WsLoad

from tether_cli.fleet import numbered_ids


async def replay_ws(url: str, cursor: str, want: int, within: float) -> dict[str, Any]:
    got: list[str] = []
    reconnects = 0
    closes: list[Any] = []
    t0 = time.perf_counter()
    position = cursor
    first_at = None
    deadline = t0 + within
    while len(got) < want and time.perf_counter() < deadline:
        client = WsLoad(url, keep_cursors=True, keep_data=True)
        await client.open(position)
        while len(got) + len(client.t.datas or []) < want and client.closed is None:
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.005)  # polling the reader's progress
        datas = client.t.datas or []
        if first_at is None and datas:
            first_at = time.perf_counter()
        got.extend(datas)
        if client.last_cursor:
            position = client.last_cursor
        if client.closed is not None:
            closes.append(client.closed)
            reconnects += 1
        await client.close()
    elapsed = time.perf_counter() - t0
    got = got[:want]
    return {
        "events": len(got),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(got) / elapsed) if elapsed else None,
        "reconnects": reconnects,
        "close_codes": closes[:5],
        "datas": got,
    }


def replay_sse(base: str, cursor: str, want: int, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    datas: list[str] = []
    with (
        httpx.Client(base_url=base, timeout=timeout) as client,
        client.stream(
            "GET",
            "/api/events",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Last-Event-ID": cursor},
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:"):
                datas.append(line[5:].strip())
                if len(datas) >= want:
                    break
            if time.perf_counter() - t0 > timeout:
                break
    elapsed = time.perf_counter() - t0
    return {
        "events": len(datas),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(datas) / elapsed) if elapsed else None,
        "datas": datas,
    }


def exact(expected: list[str], got: list[str]) -> dict[str, Any]:
    e, g = collections.Counter(expected), collections.Counter(got)
    return {
        "exact": e == g,
        "missing": sum((e - g).values()),
        "extra_or_twice": sum((g - e).values()),
    }


async def fill(server: Any, devices: list[str], commands: int) -> WsLoad:
    live = WsLoad(server.ws_url, keep_cursors=True, keep_data=True)
    await live.open()
    await asyncio.sleep(0.3)
    refs = range(1, commands + 1)
    await live.run_open_loop(1, commands, 800.0, devices)
    ok = await live.wait_terminal(refs, 60)
    log(f"filled: {live.t.events} events seen live, all terminal: {ok}, closed {live.closed}")
    await asyncio.sleep(0.5)
    await live.close()
    return live


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--back", type=int, default=10_000)
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    raise_nofile()
    result: dict[str, Any] = {"bench": "resume", "machine": machine_facts(), "back": args.back}
    with Harness("resume") as h:
        broker = h.broker()
        server = h.server(broker)
        devices = numbered_ids(20, "sim-")
        creds = h.work / "fleet.json"
        server.provision_rest(devices, creds)
        sim = h.simulator(creds, len(devices), broker, latency=0.0)
        if not sim.wait_all_connected(30) or server.wait_online(len(devices), 30) is None:
            raise RuntimeError("fleet did not come online")
        live = asyncio.run(fill(server, devices, args.commands))
        cursors = live.t.cursors or []
        datas = live.t.datas or []
        if len(cursors) <= args.back:
            raise RuntimeError(f"only {len(cursors)} events recorded live")
        cursor = cursors[-args.back - 1]
        expected = datas[-args.back :]
        sim.stop()  # nothing more happens meanwhile: the replay reads a quiet store
        ws_runs, sse_runs = [], []
        pids = {**server.pids, "loadgen": os.getpid()}
        for i in range(args.repeat):
            meter = CpuMeter(pids)
            meter.start()
            r = asyncio.run(replay_ws(server.ws_url, cursor, args.back, args.timeout))
            r["cpu"] = meter.stop()
            r.update(exact(expected, r.pop("datas")))
            log(
                f"ws replay {i + 1}: {r['events']} events in {r['seconds']} s = "
                f"{r['events_per_s']}/s, reconnects {r['reconnects']} {r['close_codes']}, "
                f"exact {r['exact']}"
            )
            ws_runs.append(r)
            meter = CpuMeter(pids)
            meter.start()
            s = replay_sse(server.url, cursor, args.back, args.timeout)
            s["cpu"] = meter.stop()
            s.update(exact(expected, s.pop("datas")))
            log(
                f"sse replay {i + 1}: {s['events']} events in {s['seconds']} s = "
                f"{s['events_per_s']}/s, exact {s['exact']}"
            )
            sse_runs.append(s)
    result.update(
        live_events_recorded=len(cursors),
        ws=ws_runs,
        sse=sse_runs,
        ws_median_events_per_s=statistics.median(r["events_per_s"] or 0 for r in ws_runs),
        sse_median_events_per_s=statistics.median(r["events_per_s"] or 0 for r in sse_runs),
        ws_all_exact=all(r["exact"] for r in ws_runs),
        ws_total_reconnects=sum(r["reconnects"] for r in ws_runs),
    )
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
