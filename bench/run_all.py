"""Run every Tether benchmark, one after the other, and print one table.

Each benchmark is its own script (and process) that starts and stops everything it needs; this
runs them with a time limit each, collects the JSON each prints as its last line, writes all of
it to ``bench/results/run-<UTC time>.json`` and prints a table of the figures against the targets,
with Tether's end-to-end figures as ratios of the raw MQTT baseline measured in the same run.

The end-to-end bench runs for two server topologies, 1 worker + 1 gateway (``e2e``) and 2 workers
+ 2 gateways (``e2e_2x2``), next to the raw baseline; ``--repeat N`` runs the chosen benches N
times, alternating (baseline, e2e, e2e_2x2, baseline, ...), and the topology table gives the
median of each figure over the rounds, with each round's Tether/raw ratio taken within the round.

    .venv/bin/python bench/run_all.py [--only e2e,baseline] [--no-profile] [--quick]
    .venv/bin/python bench/run_all.py --only baseline,e2e,e2e_2x2 --repeat 3 --no-profile
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine_facts  # noqa: E402

BENCHES: dict[str, list[str]] = {
    "store": ["store_transitions.py"],
    "baseline": ["baseline_raw.py"],
    "e2e": ["e2e_ws.py", "--workers", "1", "--gateways", "1"],
    "e2e_2x2": ["e2e_ws.py", "--workers", "2", "--gateways", "2"],
    "catchup": ["catchup.py"],
    "resume": ["resume.py"],
    "scale": ["scale_10k.py"],
    "provision": ["provision_rest.py"],
}
QUICK = {
    "store": ["--commands", "5000", "--repeat", "1"],
    "baseline": ["--devices", "200", "--duration", "3", "--search", "2000", "--bisect", "0"],
    "e2e": ["--devices", "200", "--duration", "3", "--search", "1500", "--bisect", "0"],
    "e2e_2x2": ["--devices", "200", "--duration", "3", "--search", "1500", "--bisect", "0"],
    "catchup": ["--repeat", "1"],
    "resume": ["--repeat", "1"],
    "scale": ["--devices", "2000", "--hold", "10", "--duration", "4"],
    "provision": ["--devices", "600", "--budget", "20"],
}


def run_one(name: str, extra: list[str], timeout: float) -> dict[str, Any]:
    script, *fixed = BENCHES[name]
    argv = [sys.executable, str(HERE / script), *fixed, *extra]
    print(f"\n=== {name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "seconds": timeout}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {proc.returncode}, no JSON", "seconds": time.monotonic() - t0}
    result: dict[str, Any] = json.loads(lines[-1])
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["exit_code"] = proc.returncode
    return result


def _step(res: dict[str, Any], rate: float) -> dict[str, Any] | None:
    for s in res.get("fixed", []) + res.get("search", []):
        if s["offered_rate"] == rate:
            return s
    return None


def _lat(step: dict[str, Any] | None, q: str) -> float | None:
    return step["latency_from_schedule"].get(q) if step else None


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}x"


def table(results: dict[str, dict[str, Any]]) -> tuple[list[list[str]], list[list[str]]]:
    """(figures, targets): rows of strings."""
    rows: list[list[str]] = []
    targets: list[list[str]] = []
    raw = results.get("baseline", {})
    e2e = results.get("e2e", {})
    if raw or e2e:
        for rate in (100, 200, 500, 1000):
            r, e = _step(raw, rate), _step(e2e, rate)
            for q in ("p50_ms", "p99_ms"):
                rows.append(
                    [
                        f"latency {q[:3]} at {rate}/s offered",
                        _fmt(_lat(e, q), " ms"),
                        _fmt(_lat(r, q), " ms"),
                        _ratio(_lat(e, q), _lat(r, q)),
                    ]
                )
            if e:
                rows.append(
                    [
                        f"  {rate}/s: lost / refused / dup runs / completed per s",
                        f"{e['lost']} / {sum(e['errors'].values())} / "
                        f"{e.get('duplicate_runs', '-')} / {_fmt(e['completion_rate'])}",
                        f"{r['lost']} / 0 / {r['duplicate_acks']} / {_fmt(r['completion_rate'])}"
                        if r
                        else "-",
                        "",
                    ]
                )
        e_max, r_max = e2e.get("max_sustained_rate"), raw.get("max_sustained_rate")
        rows.append(
            [
                "highest sustained rate (zero loss)",
                _fmt(e_max, "/s"),
                _fmt(r_max, "/s"),
                _ratio(e_max, r_max),
            ]
        )
        e200 = _step(e2e, 200)
        p50, p99 = _lat(e200, "p50_ms"), _lat(e200, "p99_ms")
        targets.append(
            ["e2e p50 at 200/s <= 5 ms", _fmt(p50, " ms"), _met(p50 is not None and p50 <= 5)]
        )
        targets.append(
            ["e2e p99 at 200/s <= 25 ms", _fmt(p99, " ms"), _met(p99 is not None and p99 <= 25)]
        )
        targets.append(
            [
                "sustained >= 1,000/s with zero loss",
                _fmt(e_max, "/s"),
                _met(bool(e_max and e_max >= 1000)),
            ]
        )
        ratio = e_max / r_max if e_max and r_max else None
        targets.append(
            [
                "sustained >= 0.4 x raw baseline",
                f"{ratio:.2f}x" if ratio else "-",
                _met(bool(ratio and ratio >= 0.4)),
            ]
        )
        if e2e.get("provision_rest"):
            p = e2e["provision_rest"]
            rows.append(
                [
                    f"REST provisioning of {p['devices']} devices (8 connections)",
                    f"{p['seconds']} s ({p['per_second']}/s)",
                    "",
                    "",
                ]
            )
    sc = results.get("scale", {})
    if sc:
        c = sc.get("connect", {})
        rss = sc.get("rss_mib", {})
        rows.append(
            [
                f"{_fmt(sc.get('devices'))} devices: time to connect all (simulator / bridge "
                "sees all online)",
                f"{c.get('simulator_seconds')} s / "
                f"{c.get('bridge_all_online_seconds_from_launch')} s",
                "",
                "",
            ]
        )
        for when in ("after_connect", "after_load"):
            v = rss.get(when, {})
            rows.append(
                [
                    f"  RSS {when.replace('_', ' ')}: workers+gateways / mosquitto / simulator",
                    f"{_server_rss(v)} / {v.get('mosquitto')} / {v.get('simulator')} MiB",
                    "",
                    "",
                ]
            )
        for step in sc.get("load", []):
            rows.append(
                [
                    f"  commands at {step['offered_rate']:.0f}/s over the whole fleet: "
                    "p50 / p99 / lost",
                    f"{_fmt(_lat(step, 'p50_ms'))} / "
                    f"{_fmt(_lat(step, 'p99_ms'))} ms / {step['lost']}",
                    "",
                    "",
                ]
            )
        h = sc.get("after_hold", {})
        rows.append(
            [
                f"  still connected after {h.get('seconds')} s (simulator / bridge)",
                f"{h.get('simulator_connected')} / {h.get('bridge_online')}",
                "",
                "",
            ]
        )
        ok = bool(c.get("all_connected")) and h.get("simulator_connected") == sc.get("devices")
        targets.append(
            [
                f"{_fmt(sc.get('devices'))} devices connected",
                f"{h.get('simulator_connected')}",
                _met(ok),
            ]
        )
        first = (sc.get("load") or [None])[0]
        if first:
            targets.append(
                [
                    "  ... commands still flowing (200/s, zero loss)",
                    f"lost {first['lost']}, p99 {_lat(first, 'p99_ms')} ms",
                    _met(first["sustained"]),
                ]
            )
    cu = results.get("catchup", {})
    if cu:
        rows.append(
            [
                f"catch-up of {cu.get('commands')} commands: median s from launch / from connect",
                f"{cu.get('median_seconds_from_launch')} / {cu.get('median_seconds_from_connect')}",
                "",
                "",
            ]
        )
        rows.append(
            [
                "  catch-up: lost / commands run twice by the device (all rounds)",
                f"{cu.get('lost_total')} / {cu.get('duplicate_runs_total')}",
                "",
                "",
            ]
        )
        s = cu.get("median_seconds_from_launch")
        targets.append(
            [
                "catch-up of 1,000 commands <= 5 s",
                _fmt(s, " s"),
                _met(s is not None and s <= 5 and cu.get("all_rounds_complete", False)),
            ]
        )
        targets.append(
            [
                "  ... with nothing lost or run twice",
                f"lost {cu.get('lost_total')}, run twice {cu.get('duplicate_runs_total')}",
                _met(cu.get("lost_total") == 0 and cu.get("duplicate_runs_total") == 0),
            ]
        )
    rs = results.get("resume", {})
    if rs:
        rows.append(
            [
                f"replay of {_fmt(rs.get('back'))} events: WebSocket / SSE",
                f"{_fmt(rs.get('ws_median_events_per_s'))} / "
                f"{_fmt(rs.get('sse_median_events_per_s'))} events/s",
                "",
                "",
            ]
        )
        v = rs.get("ws_median_events_per_s")
        targets.append(
            [
                "replay >= 20,000 events/s (WebSocket)",
                _fmt(v, "/s"),
                _met(bool(v and v >= 20000 and rs.get("ws_all_exact"))),
            ]
        )
    st = results.get("store", {})
    if st:
        labels = {
            "FULL": "FULL, writer thread",
            "NORMAL": "NORMAL, writer thread",
            "FULL_inline": "FULL, inline (the bridge's I/O thread)",
        }
        for level, label in labels.items():
            if level in st:
                m = st[level]["median_run"]
                rows.append(
                    [
                        f"store transitions/s, {label} (8 shards)",
                        f"{_fmt(m['transitions_per_s'])} "
                        f"(runs {st[level]['transitions_per_s_all']})",
                        "",
                        "",
                    ]
                )
                rows.append(
                    [
                        f"  one lone transition (commit) p50 / p99, {label}",
                        f"{m['lone_transition_ms']['p50']} / {m['lone_transition_ms']['p99']} ms",
                        "",
                        "",
                    ]
                )
        v = st.get("FULL_inline", {}).get("median_run", {}).get("transitions_per_s")
        w = st.get("FULL", {}).get("median_run", {}).get("transitions_per_s")
        targets.append(
            [
                "store >= 20,000 transitions/s (FULL; inline / writer thread)",
                f"{_fmt(v, '/s')} / {_fmt(w, '/s')}",
                _met(bool(v and v >= 20000)),
            ]
        )
    pr = results.get("provision", {})
    if pr:
        blocks = ", ".join(f"{b['devices']}: {b['per_second']}/s" for b in pr.get("blocks", []))
        rows.append(
            [
                f"REST provisioning from empty ({pr.get('workers')} connections, time-boxed)",
                f"{pr.get('provisioned')} devices in {pr.get('seconds')} s; per block: {blocks}",
                "",
                "",
            ]
        )
    return rows, targets


TOPOLOGIES = {"e2e": "1 worker + 1 gateway", "e2e_2x2": "2 workers + 2 gateways"}


def _cpu_ms(step: dict[str, Any] | None, key: str) -> float | None:
    return (step or {}).get("cpu_per_command", {}).get(key)


def _saturation(res: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the highest sustained step, the first step that was not sustained)."""
    steps = res.get("fixed", []) + res.get("search", [])
    best = res.get("max_sustained_rate")
    top = next((s for s in steps if s["offered_rate"] == best and s["sustained"]), None)
    failed = res.get("first_failed_rate")
    over = next((s for s in steps if s["offered_rate"] == failed and not s["sustained"]), None)
    return top, over


def topology_figures(res: dict[str, Any], raw: dict[str, Any], cpu_key: str) -> dict[str, Any]:
    """One round's figures of one topology (or of the raw baseline, with ``raw`` itself)."""
    s200 = _step(res, 200)
    top, over = _saturation(res)
    rate, raw_rate = res.get("max_sustained_rate"), raw.get("max_sustained_rate")
    lost = sum(s.get("lost", 0) for s in res.get("fixed", []) + res.get("search", []) if s)
    per_process = (top or {}).get("cpu_per_command", {}).get("per_process_ms", {})
    return {
        "sustained_rate": rate,
        "ratio_to_raw": round(rate / raw_rate, 3) if rate and raw_rate else None,
        "p50_ms_at_200": _lat(s200, "p50_ms"),
        "p99_ms_at_200": _lat(s200, "p99_ms"),
        "lost_at_200": s200.get("lost") if s200 else None,
        "cpu_ms_per_cmd_at_200": _cpu_ms(s200, cpu_key),
        "cpu_ms_per_cmd_at_sustained_max": _cpu_ms(top, cpu_key),
        "cpu_ms_per_cmd_overloaded": _cpu_ms(over, cpu_key),
        "overloaded_rate": res.get("first_failed_rate"),
        "cpu_ms_per_cmd_per_process_at_sustained_max": per_process,
        "cores_at_sustained_max": (
            (top or {}).get("cpu_to_done") or (top or {}).get("cpu", {})
        ).get("cores", {}),
        "lost_in_sustained_steps": sum(
            s.get("lost", 0) for s in res.get("fixed", []) + res.get("search", []) if s["sustained"]
        ),
        "lost_all_steps": lost,
    }


def topologies(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per topology: each round's figures and the median of each number over the rounds."""
    out: dict[str, Any] = {}
    for name, key in (("baseline", "raw_ms"), *((n, "tether_ms") for n in TOPOLOGIES)):
        per_round = [
            topology_figures(r[name], r.get("baseline", {}), key)
            for r in rounds
            if name in r and "error" not in r[name]
        ]
        if not per_round:
            continue
        medians: dict[str, Any] = {}
        for field in per_round[0]:
            values = [f[field] for f in per_round if isinstance(f.get(field), (int, float))]
            if values and not isinstance(per_round[0][field], dict):
                medians[field] = round(statistics.median(values), 3)
        out[name] = {"rounds": per_round, "median": medians}
    return out


def topology_markdown(topo: dict[str, Any]) -> str:
    names = [n for n in ("baseline", *TOPOLOGIES) if n in topo]
    label = {"baseline": "raw MQTT (controller + broker)", **TOPOLOGIES}
    rows = [
        ("highest sustained rate, zero loss (/s)", "sustained_rate"),
        ("ratio to raw (same round)", "ratio_to_raw"),
        ("p50 at 200/s (ms)", "p50_ms_at_200"),
        ("p99 at 200/s (ms)", "p99_ms_at_200"),
        ("CPU ms per command at 200/s", "cpu_ms_per_cmd_at_200"),
        ("CPU ms per command at the highest sustained rate", "cpu_ms_per_cmd_at_sustained_max"),
        ("CPU ms per command overloaded (first failed step)", "cpu_ms_per_cmd_overloaded"),
        ("lost in sustained steps", "lost_in_sustained_steps"),
    ]
    out = ["| median of rounds | " + " | ".join(label[n] for n in names) + " |"]
    out.append("|---" * (len(names) + 1) + "|")
    for text, field in rows:
        cells = []
        for n in names:
            vals = [r.get(field) for r in topo[n]["rounds"]]
            med = topo[n]["median"].get(field)
            cells.append(f"{_fmt(med)} ({', '.join(_fmt(v) for v in vals)})")
        out.append(f"| {text} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _server_rss(rss: dict[str, Any]) -> float | None:
    """The server processes' RSS together (``gateway`` alone in runs from before the split)."""
    own = [v for k, v in rss.items() if k.startswith(("worker-", "gateway"))]
    return round(sum(own), 1) if own else None


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def markdown(rows: list[list[str]], targets: list[list[str]]) -> str:
    out = ["| figure | Tether | raw MQTT baseline | Tether / raw |", "|---|---|---|---|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    out += ["", "| target | measured | verdict |", "|---|---|---|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in t) + " |" for t in targets]
    return "\n".join(out)


def contention(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Other processes' CPU during the measured intervals (a shared machine shows up here)."""
    seen = []
    for name, res in results.items():
        for s in res.get("fixed", []) + res.get("search", []):
            cpu = s.get("cpu_during_send") or s.get("cpu") or {}
            if "cores" in cpu:
                seen.append((name, s["offered_rate"], cpu["cores"].get("others")))
    vals = [v for _, _, v in seen if v is not None]
    return {
        "steps": len(vals),
        "others_cores_max": max(vals) if vals else None,
        "others_cores_median": sorted(vals)[len(vals) // 2] if vals else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHES))
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the scripts")
    parser.add_argument("--timeout", type=float, default=600.0, help="per benchmark")
    parser.add_argument("--repeat", type=int, default=1, help="rounds, alternating the benches")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAMES=ARGS",
        help='extra arguments for some benches, e.g. --set e2e,e2e_2x2="--devices 200"',
    )
    parser.add_argument("--from-json", type=Path, help="only print the table of an earlier run")
    args = parser.parse_args()
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        rows, targets = table(doc["results"])
        print(markdown(rows, targets))
        if doc.get("topologies"):
            print("\n" + topology_markdown(doc["topologies"]))
        return 0
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    chosen: dict[str, list[str]] = {}
    for item in args.set:
        names, _, text = item.partition("=")
        for name in names.split(","):
            chosen.setdefault(name, []).extend(shlex.split(text))
    rounds: list[dict[str, dict[str, Any]]] = []
    for n in range(args.repeat):
        results: dict[str, dict[str, Any]] = {}
        for name in args.only.split(","):
            extra = list(QUICK.get(name, [])) if args.quick else []
            extra += chosen.get(name, [])
            if not args.no_profile and name in ("e2e", "store") and n == 0:
                extra.append("--profile")
            results[name] = run_one(name, extra, args.timeout)
            if "error" in results[name]:
                print(f"{name}: {results[name]['error']}", file=sys.stderr)
        rounds.append(results)
    results = rounds[0]
    doc = {
        "started_utc": started,
        "machine": machine_facts(),
        "quick": args.quick,
        "argv": sys.argv[1:],
        "contention": contention(results),
        "results": results,
        "later_rounds": rounds[1:],
        "topologies": topologies(rounds),
    }
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"run-{started}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(doc, indent=1))
    rows, targets = table(results)
    m = doc["machine"]
    print(
        f"\nTether benchmarks, {m['date_utc']}: {m['nproc']} x {m['cpu_model']}, "
        f"Python {m['python']}, Mosquitto {m['mosquitto']}, git {m['git']}"
    )
    print(f"other processes' CPU during measured steps: {doc['contention']}\n")
    print(markdown(rows, targets))
    if doc["topologies"]:
        print(f"\nend to end by topology, {args.repeat} round(s): median (each round)\n")
        print(topology_markdown(doc["topologies"]))
    print(f"\nraw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
