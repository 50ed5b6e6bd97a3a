"""Bench: state transitions per second through the shard writers.

``broker_bridge.store.sharded.ShardedStore`` (8 shards, as a new store gets by default) at the
synchronous level shipped (FULL; NORMAL too, for comparison), in a temp directory under /tmp
(ext4 here, the same disk as the repo). Devices are created, ``--commands`` commands accepted
(``jobs.accept_command``), then each goes queued → sent → delivered → succeeded through
``jobs.transition``, one write job per transition as the bridge submits them, with at most
``--window`` jobs outstanding (the bridge is bounded the same way by MQTT receive maximum).
Every job's future is waited for, i.e. every transition is committed (and fsynced) when counted.

Also: the latency of one lone transition (nothing else queued), which is what each hop of a
command pays at low load: one commit, one fsync.

    .venv/bin/python bench/store_transitions.py [--commands 20000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from _common import CpuMeter, emit, log, machine_facts
from _profile import Profile

from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore
from tether.protocol import CommandState, new_command_id

S = CommandState


def settle(future: Future[Any], drain: Any = None) -> Any:
    """The job's result; inline, this thread commits until it is there."""
    while drain is not None and not future.done():
        drain()
    return future.result()


def bounded(submit_all: Any, window: int, drain: Any = None) -> float:
    """Submit jobs from an iterator of thunks, keeping ``window`` futures outstanding."""
    t0 = time.perf_counter()
    outstanding: deque[Future[Any]] = deque()
    for thunk in submit_all:
        outstanding.append(thunk())
        if len(outstanding) >= window:
            settle(outstanding.popleft(), drain)
    while outstanding:
        settle(outstanding.popleft(), drain)
    return time.perf_counter() - t0


def run(
    level: str,
    devices: int,
    commands: int,
    window: int,
    shards: int,
    profile: bool = False,
    native: bool = False,
    inline: bool = False,
) -> dict[str, Any]:
    """``inline``: the submitting thread commits too, as the bridge's I/O thread does for the
    acks it receives; otherwise the store's own writer thread commits (as for commands sent
    from the gateway's event loop)."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-store-") as tmp:
        store = ShardedStore(
            Path(tmp) / "store",
            shards,
            synchronous=level,
            wake=(lambda: None) if inline else None,
        )
        drain = store.drain_writes if inline else None
        policy = DeliveryPolicy()
        now = dt.datetime.now(dt.UTC)
        ids = [f"dev-{i:05d}" for i in range(devices)]
        for f in [store.write(d, lambda tx, d=d: jobs.create_device(tx, d, d, now)) for d in ids]:
            settle(f, drain)
        cmds = [(new_command_id(), ids[i % devices]) for i in range(commands)]

        def accepts() -> Any:
            for cid, dev in cmds:
                new = jobs.NewCommand(cid, dev, "echo", {"n": 1})
                yield lambda new=new, dev=dev: store.write(
                    dev, lambda tx: jobs.accept_command(tx, new, dt.datetime.now(dt.UTC), policy)
                )

        accept_s = bounded(accepts(), window, drain)
        batches0 = sum(w.batches for w in store.writers.values())
        jobs0 = sum(w.jobs for w in store.writers.values())

        def transitions() -> Any:
            for target in (S.SENT, S.DELIVERED, S.SUCCEEDED):
                for cid, dev in cmds:
                    yield lambda cid=cid, dev=dev, target=target: store.write(
                        dev,
                        lambda tx: jobs.transition(
                            tx,
                            cid,
                            target,
                            dt.datetime.now(dt.UTC),
                            device_id=dev,
                            result={"ok": True} if target is S.SUCCEEDED else None,
                            policy=policy,
                        ),
                    )

        profiler = Profile(os.getpid(), 3) if profile else None
        gil_profiler = Profile(os.getpid(), 3, gil=True) if profile else None
        native_profiler = Profile(os.getpid(), 3, rate=100, native=True) if native else None
        meter = CpuMeter({"this_process": os.getpid()})
        meter.start()
        trans_s = bounded(transitions(), window, drain)
        cpu = meter.stop()
        batches = sum(w.batches for w in store.writers.values()) - batches0
        njobs = sum(w.jobs for w in store.writers.values()) - jobs0
        # One lone transition at a time: the commit (and fsync) latency each hop pays.
        lone_ids = [(new_command_id(), ids[i % devices]) for i in range(200)]
        for cid, dev in lone_ids:
            new = jobs.NewCommand(cid, dev, "echo", {})
            settle(
                store.write(dev, lambda tx, new=new: jobs.accept_command(tx, new, now, policy)),
                drain,
            )
        lone = []
        for cid, dev in lone_ids:
            t0 = time.perf_counter()
            settle(
                store.write(
                    dev, lambda tx, cid=cid, dev=dev: jobs.transition(tx, cid, S.SENT, now)
                ),
                drain,
            )
            lone.append(time.perf_counter() - t0)
        store.close()
    n = commands * 3
    return {
        "committed_by": "the submitting thread (inline)" if inline else "the store's writer thread",
        "synchronous": level,
        "shards": shards,
        "devices": devices,
        "commands": commands,
        "window": window,
        "accepts_per_s": round(commands / accept_s),
        "transitions": n,
        "transition_seconds": round(trans_s, 2),
        "transitions_per_s": round(n / trans_s),
        "mean_batch_jobs": round(njobs / batches, 1) if batches else None,
        "cpu_during_transitions": cpu,
        **({"profile": profiler.result()} if profiler else {}),
        **({"profile_gil_holder": gil_profiler.result()} if gil_profiler else {}),
        **({"profile_native": native_profiler.result()} if native_profiler else {}),
        "lone_transition_ms": {
            "p50": round(statistics.median(lone) * 1000, 2),
            "p99": round(sorted(lone)[int(len(lone) * 0.99) - 1] * 1000, 2),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=20000)
    parser.add_argument("--window", type=int, default=4000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--levels", default="FULL,NORMAL")
    parser.add_argument("--repeat", type=int, default=3, help="runs per level; median reported")
    parser.add_argument("--profile", action="store_true", help="one more FULL run under py-spy")
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "store_transitions", "machine": machine_facts()}
    modes = [(level, False) for level in args.levels.split(",")] + [("FULL", True)]
    for level, inline in modes:
        runs = []
        for _ in range(args.repeat):
            r = run(level, args.devices, args.commands, args.window, args.shards, inline=inline)
            log(
                f"{level}{' inline' if inline else ''}: {r['transitions_per_s']} transitions/s, "
                f"{r['accepts_per_s']} accepts/s, batch {r['mean_batch_jobs']}, "
                f"lone {r['lone_transition_ms']}, cores {r['cpu_during_transitions']['cores']}"
            )
            runs.append(r)
        runs.sort(key=lambda r: r["transitions_per_s"])
        result[f"{level}_inline" if inline else level] = {
            "median_run": runs[len(runs) // 2],
            "transitions_per_s_all": [r["transitions_per_s"] for r in runs],
        }
    if args.profile:
        r = run("FULL", args.devices, args.commands, args.window, args.shards, profile=True)
        result["profiled_run"] = r
        # Native stacks (py-spy pauses the process at each sample, so this run is slower and
        # its rate is not a figure): where the writer threads wait.
        r = run("FULL", args.devices, args.commands, args.window, args.shards, native=True)
        result["native_profiled_run"] = {
            "note": "py-spy --native pauses the process 100x/s: this run's rate is no figure",
            "profile_native": r.get("profile_native"),
        }
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
