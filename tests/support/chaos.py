"""The chaos suite's shared parts: Jepsen-style loss accounting, counting devices, fault drivers.

Loss accounting. Every command a fault test is responsible for is classified once the system has
settled (or the deadline passed):

- ``ok``: terminal, and it ran exactly as its final state says: ``succeeded`` ran exactly once;
  ``failed``/``timed_out`` ran at most once; ``rejected``/``expired``/``cancelled``/
  ``undeliverable`` never ran. Its final state is one the test allows.
- ``lost``: accepted but missing from the store, or not terminal by the deadline, or ended
  ``succeeded`` (or in a state the test does not allow) without ever running.
- ``duplicated``: a device ran it more than once.
- ``unexpected``: a device ran something the store never accepted, a command ran but its record
  says it did not (``expired`` that ran...), a final state the test does not allow after a run,
  or a recorded history whose states moved backwards.

Each test records one row (``record``): a one-line summary is printed, and the whole session's
rows are written to ``artifacts/chaos-summary.md`` (and printed once more when the run ends).

Drivers, run as ``python -m tests.support.chaos MODE SPEC_JSON``:

- ``burst``: ``tests.support.burst_driver`` with the command name as a parameter.
- ``ack-gate``: a bridge that blocks every shard writer as soon as the first ack reaches it, so
  acks arrive and are never committed (nor PUBACKed); the test SIGKILLs it there.

``install_handlers`` gives ``tether device`` (``--handlers tests.support.chaos:install_handlers``)
a ``work`` command that appends its ``tag`` to the file named by ``TETHER_CHAOS_MARKER`` (fsynced)
before it "works" for ``ms`` milliseconds: the marker counts real runs across SIGKILLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devices.agent import DeviceAgent
from devices.config import AgentSettings
from tests.support import store_reader
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.processes import GatewayProcess, stop_process, tether_cli
from tests.support.waiting import wait_until
from tether.protocol import CommandState

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SUMMARY = ARTIFACTS / "chaos-summary.md"

RAN_ONCE = {"succeeded"}
MAY_HAVE_RUN = {"failed", "timed_out"}
NEVER_RAN = {"rejected", "expired", "cancelled", "undeliverable"}


# --- loss accounting ----------------------------------------------------------------------


@dataclass
class Outcome:
    """One fault's ledger: every command classified once."""

    fault: str
    commands: int = 0
    ok: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # command id -> why
    duplicated: dict[str, int] = field(default_factory=dict)  # command id -> runs
    unexpected: dict[str, str] = field(default_factory=dict)  # command id (or tag) -> why
    # ran, but its record says it did not (a never-ran state with no late outcome to correct it)
    said_not_run: dict[str, str] = field(default_factory=dict)
    states: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.said_not_run)

    def note(self, text: str) -> Outcome:
        self.notes.append(text)
        return self

    def line(self) -> str:
        states = ", ".join(f"{s} {n}" for s, n in sorted(self.states.items()))
        text = (
            f"{self.fault}: {self.commands} commands: ok {self.ok}, lost {len(self.lost)}, "
            f"duplicated {len(self.duplicated)}, unexpected {len(self.unexpected)}, "
            f"said not run but ran {len(self.said_not_run)} ({states})"
        )
        return text + (f"; {'; '.join(self.notes)}" if self.notes else "")

    def details(self, limit: int = 8) -> str:
        parts = [self.line()]
        for name, found in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("unexpected", self.unexpected),
            ("said not run but ran", self.said_not_run),
        ):
            if found:
                sample = list(found.items())[:limit]
                parts.append(f"{name} ({len(found)}): {sample}")
        return "\n".join(parts)


def classify(
    fault: str,
    stored: Mapping[str, Mapping[str, Any]],
    runs: Mapping[str, int],
    *,
    accepted: Iterable[str] = (),
    histories: Mapping[str, list[str]] | None = None,
    allowed: Set[str] | Mapping[str, Set[str]] = frozenset({"succeeded"}),
    strays: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> Outcome:
    """Classify commands.

    ``stored``: the store's command rows (``store_reader.commands``); ``runs``: command id ->
    times a device really ran it; ``accepted``: ids a client was told were accepted (each must be
    in the store); ``histories``: recorded states per command, checked for backward moves;
    ``allowed``: final states the test allows, for all commands or per command id; ``strays``:
    runs the test could not tie to any stored command; ``only``: the ids this ledger is about
    (default: every stored and accepted command).
    """
    outcome = Outcome(fault)
    accepted = set(accepted)
    ids = set(only) if only is not None else set(stored) | accepted
    backwards = set(store_reader.moved_backwards(dict(histories))) if histories else set()
    for command_id in sorted(ids):
        outcome.commands += 1
        ran = runs.get(command_id, 0)
        row = stored.get(command_id)
        if row is None:
            if ran:
                outcome.unexpected[command_id] = f"ran {ran}x but the store does not know it"
            else:
                outcome.lost[command_id] = "accepted, missing from the store"
            continue
        state = str(row["state"])
        outcome.states[state] += 1
        permitted = allowed.get(command_id, set()) if isinstance(allowed, Mapping) else allowed
        if ran > 1:
            outcome.duplicated[command_id] = ran
        elif command_id in backwards:
            outcome.unexpected[command_id] = f"states moved backwards: {histories[command_id]}"  # type: ignore[index]
        elif not CommandState(state).is_terminal:
            outcome.lost[command_id] = f"still {state} (attempts {row.get('attempts')})"
        elif state in NEVER_RAN and ran and not _late_run(row):
            outcome.said_not_run[command_id] = f"{state} but it ran, and the record does not say so"
        elif state in NEVER_RAN and ran:
            outcome.unexpected[command_id] = f"{state} but it ran (the record says so: late)"
        elif state in RAN_ONCE and not ran:
            outcome.lost[command_id] = f"{state} but it never ran"
        elif state not in permitted:
            why = f"ended {state} ({row.get('error')}), expected {sorted(permitted)}"
            (outcome.unexpected if ran else outcome.lost)[command_id] = why
        else:
            outcome.ok += 1
    for stray in strays:
        outcome.unexpected[f"stray:{stray}"] = "ran, but no stored command carries it"
    return outcome


def _late_run(row: Mapping[str, Any]) -> bool:
    """The record itself says the device went on to run it (its late outcome)."""
    late = row.get("late")
    if isinstance(late, str):
        late = json.loads(late)
    return isinstance(late, dict) and late.get("status") in ("received", "succeeded", "failed")


def runs_by_id(
    stored: Mapping[str, Mapping[str, Any]], runs_by_tag: Mapping[Any, int], key: str
) -> tuple[dict[str, int], list[Any]]:
    """Map runs counted by an argument (``args[key]``) to command ids; return the strays too."""
    out: dict[str, int] = {}
    tags = set()
    for command_id, row in stored.items():
        tag = json.loads(row["args"]).get(key)
        tags.add(tag)
        if tag in runs_by_tag:
            out[command_id] = runs_by_tag[tag]
    return out, [tag for tag in runs_by_tag if tag not in tags]


def ledger(
    fault: str,
    data_dir: Path,
    runs: Mapping[str, int],
    *,
    accepted: Iterable[str] = (),
    allowed: Set[str] | Mapping[str, Set[str]] = frozenset({"succeeded"}),
    strays: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> Outcome:
    """``classify`` straight from a store's shard files (read-only, from outside the bridge)."""
    return classify(
        fault,
        store_reader.commands(data_dir),
        runs,
        accepted=accepted,
        histories=store_reader.state_histories(data_dir),
        allowed=allowed,
        strays=strays,
        only=only,
    )


_ROWS: list[tuple[str, Outcome, str]] = []  # (test, outcome, verdict)
_RUN_STARTED = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def record(outcome: Outcome, *, verdict: str | None = None) -> Outcome:
    """Print the one-line summary and add the row to ``artifacts/chaos-summary.md``."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    shown = verdict or ("pass" if outcome.clean else "FAIL")
    _ROWS.append((test, outcome, shown))
    print(f"[chaos] {shown}: {outcome.line()}", flush=True)
    ARTIFACTS.mkdir(exist_ok=True)
    SUMMARY.write_text(summary_table())
    return outcome


def summary_table() -> str:
    lines = [
        "# Chaos suite: loss accounting",
        "",
        f"Run started {_RUN_STARTED}; {len(_ROWS)} rows. Columns count commands.",
        "",
        "| fault | commands | ok | lost | duplicated | unexpected | said not run, but ran "
        "| result | notes | test |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for test, o, verdict in _ROWS:
        notes = "; ".join(o.notes).replace("|", "\\|")
        lines.append(
            f"| {o.fault} | {o.commands} | {o.ok} | {len(o.lost)} | {len(o.duplicated)} | "
            f"{len(o.unexpected)} | {len(o.said_not_run)} | {verdict} | {notes} | "
            f"`{test.split('::')[-1]}` |"
        )
    return "\n".join(lines) + "\n"


def check(outcome: Outcome) -> None:
    """Record the row, then fail unless nothing was lost, duplicated or unexpected."""
    record(outcome)
    assert outcome.clean, outcome.details()


# --- agents that count their runs (moved here from test_bridge_crash.py) -------------------


class Fleet:
    """Real agents (in this process) whose one handler counts executions per command."""

    def __init__(
        self,
        broker: BrokerHandle,
        creds: list[Credentials],
        journal_dir: Path,
        **overrides: Any,
    ) -> None:
        self.runs: Counter[int] = Counter()
        self.order: dict[str, list[int]] = {}  # device id -> the n of each run, in run order
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}  # device id -> open (set) or held
        self.broker = broker
        self.creds = {c.device_id: c for c in creds}
        self.journal_dir = journal_dir
        self.overrides = overrides
        self.agents = [self._agent(c) for c in creds]

    def _agent(self, c: Credentials) -> DeviceAgent:
        settings: dict[str, Any] = {
            "device_id": c.device_id,
            "host": self.broker.host,
            "port": self.broker.port,
            "username": c.username,
            "password": c.password,
            "journal_path": self.journal_dir / f"{c.device_id}.journal",
            "reconnect_base": 0.2,
            "reconnect_cap": 1.0,
            **self.overrides,
        }
        agent = DeviceAgent(AgentSettings(**settings))
        agent.command("count")(self._counter(c.device_id))
        return agent

    def hold(self, device_id: str) -> None:
        """The device stays connected but its handler waits: commands pile up in its hands."""
        self._gates.setdefault(device_id, threading.Event()).clear()

    def release(self, device_id: str) -> None:
        self._gates.setdefault(device_id, threading.Event()).set()

    def _counter(self, device_id: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        def count(args: dict[str, Any]) -> dict[str, Any]:
            gate = self._gates.get(device_id)
            if gate is not None:
                gate.wait(60)
            return self._count(args, device_id)

        return count

    def _count(self, args: dict[str, Any], device_id: str = "") -> dict[str, Any]:
        with self._lock:
            self.runs[int(args["n"])] += 1
            self.order.setdefault(device_id, []).append(int(args["n"]))
        return {"n": args["n"]}

    def start(self) -> None:
        for agent in self.agents:
            agent.start()
        for agent in self.agents:
            assert agent.wait_connected(20)

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()

    def replace(self, device_id: str, **overrides: Any) -> DeviceAgent:
        """A new agent for ``device_id`` (same journal), not started: agents start only once."""
        for n, agent in enumerate(self.agents):
            if agent.device_id == device_id:
                fresh = DeviceAgent(
                    AgentSettings(**{**_settings_dict(agent.settings), **overrides})
                )
                fresh.command("count")(self._counter(device_id))
                self.agents[n] = fresh
                return fresh
        raise KeyError(device_id)

    def agent(self, device_id: str) -> DeviceAgent:
        return next(a for a in self.agents if a.device_id == device_id)


def _settings_dict(settings: AgentSettings) -> dict[str, Any]:
    names = AgentSettings.__dataclass_fields__
    return {n: getattr(settings, n) for n in names if names[n].init}


def wait_all_terminal(data_dir: Path, timeout: float) -> None:
    try:
        wait_until(lambda: store_reader.all_terminal(data_dir), timeout, "every command terminal")
    except TimeoutError:
        stuck = [c for c in store_reader.commands(data_dir).values() if c["finished_at"] is None]
        summary = Counter((c["device_id"], c["state"], c["attempts"]) for c in stuck)
        raise AssertionError(
            f"{len(stuck)} commands never ended: {summary.most_common(12)}"
        ) from None


def eventually(condition: Callable[[], Any], timeout: float, what: str = "condition") -> bool:
    """``wait_until`` that answers False at the deadline instead of failing."""
    try:
        wait_until(condition, timeout, what)
    except TimeoutError:
        return False
    return True


def settle(data_dir: Path, timeout: float, ids: Iterable[str] | None = None) -> bool:
    """Wait until every command (or every one of ``ids``) is terminal; False at the deadline
    (the ledger then reports what is still open as lost)."""
    wanted = set(ids) if ids is not None else None

    def done() -> bool:
        found = store_reader.commands(data_dir)
        rows = found.values() if wanted is None else [found.get(i) for i in wanted]
        return bool(rows) and all(
            r is not None and CommandState(r["state"]).is_terminal for r in rows
        )

    try:
        wait_until(done, timeout, "every command terminal")
    except TimeoutError:
        return False
    return True


def account(data_dir: Path, fleet: Fleet, accepted: dict[str, int]) -> None:
    """test_bridge_crash's check (unchanged), plus a row in the chaos summary."""
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    record(ledger(_fault_of_current_test(), data_dir, runs, accepted=accepted, strays=strays))
    assert set(accepted) <= set(stored), "an accepted command is missing from the store"
    states = Counter(c["state"] for c in stored.values())
    assert states == {"succeeded": len(stored)}, states
    ran = {int(json.loads(c["args"])["n"]) for c in stored.values()}
    duplicated = {n: k for n, k in fleet.runs.items() if k > 1}
    assert duplicated == {}, f"ran more than once: {duplicated}"
    assert set(fleet.runs) == ran, "a device ran a command the store does not know"
    assert store_reader.moved_backwards(store_reader.state_histories(data_dir)) == []


def _fault_of_current_test() -> str:
    test = os.environ.get("PYTEST_CURRENT_TEST", "unknown").split(" ")[0].split("::")[-1]
    return test.removeprefix("test_").replace("_", " ")


# --- a simulated fleet that counts runs per command id --------------------------------------


class SimFleet:
    """``devices.simulator.Simulator`` (the same code as ``tether simulate``) on its own event
    loop thread; ``runs`` counts each command id the simulated handlers really ran."""

    def __init__(self, broker: BrokerHandle, creds: list[Credentials], **options: Any) -> None:
        from devices.provision import DeviceCredentials
        from devices.simulator import SimOptions, Simulator

        runs: Counter[str] = Counter()
        self.runs = runs

        class Counting(Simulator):
            async def execute(self, device: Any, plan: Any) -> Any:
                runs[plan.command.id] += 1  # the loop thread only
                return await super().execute(device, plan)

        opts = SimOptions(
            **{
                "host": broker.host,
                "port": broker.port,
                "latency": 0.0,
                "report_every": 0,
                "reconnect_base": 0.05,
                "reconnect_cap": 0.5,
                "seed": 7,
                **options,
            }
        )
        self.reports: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.simulator = Counting(
            opts,
            [DeviceCredentials(c.device_id, c.username, c.password) for c in creds],
            report=self._report,
        )
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="chaos-fleet", daemon=True)

    def _report(self, record: dict[str, Any]) -> None:
        self.reports.append(record)
        if record["type"] == "all_connected":
            self.connected.set()

    def _main(self) -> None:
        async def run() -> None:
            self._stop = asyncio.Event()
            self._ready.set()
            await self.simulator.run(self._stop)

        try:
            self._loop.run_until_complete(run())
        finally:
            self._loop.close()

    def start(self, timeout: float = 30) -> SimFleet:
        self._thread.start()
        assert self.connected.wait(timeout), f"the simulated fleet did not connect: {self.reports}"
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            assert self._ready.wait(10)
            assert self._stop is not None
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
            assert not self._thread.is_alive(), "the simulated fleet did not stop"


# --- processes ------------------------------------------------------------------------------


class Lines:
    """A child's stdout, line by line, read by a thread (so waits have deadlines)."""

    def __init__(self, stream: Any) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.tail: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        with contextlib.suppress(ValueError, OSError):  # the test closed the stream: done
            for raw in stream:
                line = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                self.queue.put(line.rstrip("\n"))
                self.tail = [*self.tail[-200:], line.rstrip("\n")]

    def next(self, timeout: float) -> str:
        return self.queue.get(timeout=timeout)


def bridge_cli(broker: BrokerHandle, data_dir: Path, *extra: str) -> list[str]:
    """``tether bridge`` over the store in ``data_dir / "store"``."""
    return tether_cli("bridge", broker, data_dir, *extra)


def metric(api: Any, name: str, **labels: str) -> float:
    """One sample of the gateway's ``/metrics`` (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(api.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def broker_pid(broker: BrokerHandle) -> int | None:
    """The local Mosquitto's pid (None for a container)."""
    process = getattr(getattr(broker, "_broker", None), "_process", None)
    return getattr(process, "pid", None)


class PipedGateway(GatewayProcess):
    """The worker and the gateway as children whose output goes to pipes, not a file: under a
    file-size limit of 0 their log lines still come through. ``disk_full()`` / ``disk_back()``
    set and lift ``RLIMIT_FSIZE`` on the running worker (the process that writes the store):
    from then on every write(2) it makes to a regular file fails (EFBIG), which SQLite reports
    as an I/O error at commit, as on a full disk."""

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        from tests.support.processes import ADMIN_TOKEN

        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TETHER_ADMIN_TOKEN": ADMIN_TOKEN},
        )
        assert proc.stdout is not None
        self.outputs = [*getattr(self, "outputs", [])[-3:], Lines(proc.stdout)]
        return proc

    def log_tail(self, lines: int = 40) -> str:
        return "\n---\n".join("\n".join(o.tail[-lines:]) for o in getattr(self, "outputs", []))

    def disk_full(self) -> None:
        _, hard = resource.prlimit(self.worker_pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.worker_pid, resource.RLIMIT_FSIZE, (0, hard))

    def disk_back(self) -> None:
        _, hard = resource.prlimit(self.worker_pid, resource.RLIMIT_FSIZE)
        resource.prlimit(self.worker_pid, resource.RLIMIT_FSIZE, (hard, hard))


# --- tether device with a marking handler ---------------------------------------------------


def install_handlers(agent: DeviceAgent) -> None:
    """``work``: append ``tag`` to the marker file (fsynced), then work ``ms`` milliseconds."""

    @agent.command("work")
    def work(args: dict[str, Any]) -> Any:
        marker = Path(os.environ["TETHER_CHAOS_MARKER"])
        with marker.open("a") as out:
            out.write(f"{args['tag']}\n")
            out.flush()
            os.fsync(out.fileno())
        threading.Event().wait(float(args.get("ms", 0)) / 1000)  # the work itself
        return {"tag": args["tag"]}


class DeviceProcess:
    """``tether device`` for one device in a child process; journal and marker fixed across
    restarts, so runs are counted across SIGKILLs."""

    def __init__(self, broker: BrokerHandle, creds: Credentials, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.device_id = creds.device_id
        self.marker = directory / "runs.txt"
        self.argv = [
            sys.executable, "-m", "tether_cli", "device",
            "--id", creds.device_id,
            "--broker", f"{broker.host}:{broker.port}",
            "--journal", str(directory / "journal.sqlite3"),
            "--handlers", "tests.support.chaos:install_handlers",
            "--no-demo",
            "--reconnect-max", "1",
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "TETHER_DEVICE_PASSWORD": creds.password,
            "TETHER_CHAOS_MARKER": str(self.marker),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        stop_process(self.proc, signal.SIGKILL)
        self.proc = None

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def runs(self) -> list[str]:
        return self.marker.read_text().splitlines() if self.marker.exists() else []


# --- the ack-gate driver -------------------------------------------------------------------


def _ack_gate(spec: dict[str, Any]) -> None:
    """Accept ``count`` commands; at the first ack, make every shard refuse to commit for good
    (each writer commits through a ``mode=ro`` connection): acks keep arriving and are handled
    by the real code, which must leave them unacknowledged while it cannot store them."""
    from broker_bridge.bridge import Bridge, BridgeSettings
    from broker_bridge.mqtt_session import SessionSettings
    from broker_bridge.policy import DeliveryPolicy
    from tether.protocol import ProtocolError, decode_ack

    out = threading.Lock()
    forever = threading.Event()

    def say(text: str) -> None:
        with out:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    class GatedBridge(Bridge):
        armed = False

        def __init__(self, settings: BridgeSettings) -> None:
            super().__init__(settings)
            self._pass_ack = self.inbound._ack
            self.inbound._ack = self._gated_ack  # type: ignore[method-assign]

        def _gated_ack(self, device_id: str, message: Any) -> None:  # the bridge's I/O thread
            if not self.armed:
                self.armed = True
                # The I/O thread is also the thread that commits, so swapping is safe here.
                for writer in self.store.writers.values():
                    ro = sqlite3.connect(
                        f"file:{writer.path}?mode=ro",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                    )
                    ro.row_factory = sqlite3.Row
                    writer._conn = ro
                    say(f"gate-closed {writer.shard}")
            try:
                ack = decode_ack(message.payload)
                say(f"ack-arrived {ack.id} {ack.status.value}")
            except ProtocolError:
                pass
            self._pass_ack(device_id, message)

    bridge = GatedBridge(
        BridgeSettings(
            data_dir=Path(spec["data_dir"]),
            mqtt=SessionSettings(spec["host"], spec["port"], spec["username"], spec["password"]),
            policy=DeliveryPolicy(redelivery_after=spec["redelivery_after"]),
        )
    )
    devices: list[str] = spec["devices"]
    # Accepted before the bridge hears any retained status (they commit first when it starts):
    # the devices are unknown, not known offline, so the commands are published, not held.
    sends = [
        (n, bridge.send(devices[n % len(devices)], "count", {"n": n})) for n in range(spec["count"])
    ]
    bridge.start()  # reported after it has started: no ack can close the gate on its start-up
    for n, future in sends:
        say(f"accepted {future.result(30).record['id']} {n}")
    forever.wait()


def _burst(spec: dict[str, Any]) -> None:
    """``tests.support.burst_driver`` with the command name as a parameter: accept ``count``
    commands ``name`` ``{"n": n}``, printing ``accepted <id> <n>`` once each is committed."""
    from broker_bridge.bridge import Bridge, BridgeSettings
    from broker_bridge.mqtt_session import SessionSettings

    out = threading.Lock()
    bridge = Bridge(
        BridgeSettings(
            data_dir=Path(spec["data_dir"]),
            mqtt=SessionSettings(spec["host"], spec["port"], spec["username"], spec["password"]),
        )
    )
    bridge.start()
    devices: list[str] = spec["devices"]
    futures = []
    for n in range(spec["count"]):

        def report(f: Any, n: int = n) -> None:
            with out:
                sys.stdout.write(f"accepted {f.result().record['id']} {n}\n")
                sys.stdout.flush()

        future = bridge.send(devices[n % len(devices)], spec["name"], {"n": n})
        future.add_done_callback(report)
        futures.append(future)
    for future in futures:
        future.result()
    print("done", flush=True)
    threading.Event().wait()  # until the test kills this process


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    if mode == "ack-gate":
        _ack_gate(spec)
    elif mode == "burst":
        _burst(spec)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
