"""Chaos: the stream clients lose their connection mid-stream, or the gateway dies under them.

Builds on ``test_gateway_stream.py`` (resume after a clean close, stale cursors, a client that
never reads) and ``test_node_clients.py`` (npm clients across a graceful restart): here the TCP
connection is cut with sends in flight, and the gateway process is SIGKILLed. Clients resume
from their last cursor and retry unanswered sends with the same idempotency key.

Besides the command ledger, each client's view is checked: every command's events arrive
exactly once, in the order the store committed them; a missing one counts as lost, a repeated
one as duplicated.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.support import store_reader
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.chaos import (
    Fleet,
    Outcome,
    PipedGateway,
    check,
    eventually,
    ledger,
    runs_by_id,
    settle,
)
from tests.support.gateways import TOKENS, RunningGateway
from tests.support.processes import ADMIN_TOKEN
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = [pytest.mark.chaos, pytest.mark.broker]


def provision(api: httpx.Client, *ids: str) -> list[Credentials]:
    out = []
    for device_id in ids:
        body = api.post("/api/devices", json={"id": device_id}).json()
        out.append(Credentials(device_id, body["username"], body["password"]))
    return out


class View:
    """What one stream client saw: each command's states, and every cursor."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.states: dict[str, list[str]] = defaultdict(list)
        self.cursors: list[str] = []
        self.cursor: str | None = None
        self.lock = threading.Lock()

    def add(self, cursor: str, kind: str, data: dict[str, Any]) -> None:
        with self.lock:
            self.cursors.append(cursor)
            self.cursor = cursor
            if kind == "command":
                self.states[data["id"]].append(data["state"])

    def finished(self, ids: set[str]) -> bool:
        with self.lock:
            return all(self.states.get(i, [])[-1:] == ["succeeded"] for i in ids)

    def judge(self, outcome: Outcome, ids: set[str], data_dir: Path) -> None:
        """Fold this view into the ledger: each command's events must be exactly the ones the
        store committed, in order. A missing one counts as lost, a repeated one duplicated.
        (A command may legitimately skip a hop: a `received` that overtakes the PUBACK.)"""
        committed = store_reader.state_histories(data_dir)
        repeated = [c for c, k in Counter(self.cursors).items() if k > 1]
        missing = 0
        for command_id in sorted(ids):
            seen = self.states.get(command_id, [])
            if seen == committed.get(command_id):
                continue
            if len(seen) > len(set(seen)):
                outcome.duplicated[f"{self.name}:{command_id}"] = len(seen)
            else:
                missing += 1
                outcome.lost[f"{self.name}:{command_id}"] = (
                    f"{self.name} saw {seen}, the store has {committed.get(command_id)}"
                )
        outcome.note(
            f"{self.name}: {len(self.cursors)} events, {missing} cmds with a gap, "
            f"{len(repeated)} cursors twice"
        )
        for cursor in repeated:
            outcome.duplicated[f"{self.name}:event {cursor}"] = 2


BEGINNING = "c1." + "-".join(["0"] * 4)  # before every event of a 4-shard store


def ws_connect(base: str, token: str, cursor: str | None = None) -> ClientConnection:
    url = f"{base}?token={token}" + (f"&last_event_id={cursor}" if cursor else "")
    return connect(url, open_timeout=5, close_timeout=1)


@pytest.fixture
def fleet(broker: BrokerHandle, gateway: RunningGateway, tmp_path: Path) -> Iterator[Fleet]:
    with gateway.client(Role.ADMIN) as api:
        running = Fleet(broker, provision(api, "ws-0", "ws-1"), tmp_path)
    running.start()
    yield running
    running.stop()


def test_websocket_cut_mid_stream_and_resumed(
    gateway: RunningGateway, fleet: Fleet, tmp_path: Path
) -> None:
    """100 sends go out over one WebSocket; after 40 frames (answers and events) the TCP
    connection is cut (no close frame), so most answers are lost on the way. The client
    reconnects from its last cursor and re-sends, with the same idempotency keys, every send
    it has no answer for."""
    view = View("ws")
    by_key: dict[str, str] = {}

    def frame(n: int) -> str:
        return json.dumps(
            {
                "type": "send",
                "ref": n,
                "device": f"ws-{n % 2}",
                "name": "count",
                "args": {"n": n},
                "idempotency_key": f"w-{n}",
            }
        )

    frames = 0

    def take(conn: ClientConnection) -> None:
        nonlocal frames
        frames += 1
        message = json.loads(conn.recv(timeout=10))
        if message["type"] == "accepted":
            by_key[f"w-{message['ref']}"] = message["command"]["id"]
        elif message["type"] == "event":
            view.add(message["id"], message["kind"], message["data"])
        else:
            raise AssertionError(message)

    # From an explicit cursor: what is checked here is resuming, not where "now" begins.
    with ws_connect(gateway.ws_url, TOKENS[Role.OPERATOR], BEGINNING) as conn:
        for n in range(100):
            conn.send(frame(n))
        for _ in range(1000):
            if frames >= 40 and view.cursor is not None:
                break
            take(conn)
        cut_at = len(view.cursors)
        conn.socket.shutdown(socket.SHUT_RDWR)  # the network fails: no close frame either way
    unanswered = [n for n in range(100) if f"w-{n}" not in by_key]

    with ws_connect(gateway.ws_url, TOKENS[Role.OPERATOR], view.cursor) as resumed:
        for n in unanswered:
            resumed.send(frame(n))
        for _ in range(5000):
            if len(by_key) == 100 and view.finished(set(by_key.values())):
                break
            take(resumed)

    data_dir = gateway.bridge.store.data_dir
    settle(data_dir, 20)
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    outcome = ledger(
        "WebSocket cut mid-stream (100 sends in flight), resumed from its cursor",
        data_dir,
        runs,
        accepted=by_key.values(),
        strays=strays,
    ).note(f"cut after {cut_at} events; {len(unanswered)} sends re-sent with their keys")
    view.judge(outcome, set(by_key.values()), data_dir)
    keys = Counter(c["idempotency_key"] for c in stored.values())
    for key, count in keys.items():
        if count > 1:
            outcome.duplicated[f"key {key}"] = count
    check(outcome)
    assert len(stored) == 100 and unanswered


class Follower:
    """A stream client in a thread that reconnects by itself from its last cursor."""

    def __init__(self, view: View, url: str, via: str) -> None:
        self.view = view
        self.url = url
        self.via = via
        self.opens = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"follow-{via}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in range(200):  # connections, bounded
            if self.stop.is_set():
                return
            with contextlib.suppress(OSError, ConnectionClosed, httpx.HTTPError, TimeoutError):
                self._ws() if self.via == "ws" else self._sse()
            if not self.stop.is_set():
                self.stop.wait(0.1)  # a client's reconnect delay

    def _ws(self) -> None:
        with ws_connect(self.url, ADMIN_TOKEN, self.view.cursor) as conn:
            self.opens += 1
            while not self.stop.is_set():
                try:
                    message = json.loads(conn.recv(timeout=0.5))
                except TimeoutError:
                    continue
                assert message["type"] == "event", message
                self.view.add(message["id"], message["kind"], message["data"])

    def _sse(self) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        if self.view.cursor:
            headers["Last-Event-ID"] = self.view.cursor
        timeout = httpx.Timeout(5, read=1)
        with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as response:
            assert response.status_code == 200
            self.opens += 1
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line == "" and "id" in fields:
                    self.view.add(fields["id"], fields["event"], json.loads(fields["data"]))
                    fields = {}
                elif line and not line.startswith(":"):
                    key, _, value = line.partition(": ")
                    fields[key] = value

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_gateway_sigkilled_and_restarted_under_its_clients(
    broker: BrokerHandle, piped_gateway: PipedGateway, tmp_path: Path
) -> None:
    """A WebSocket and an SSE client follow the stream while a script sends 60 commands over
    REST; at the 30th the gateway (with the bridge inside) is SIGKILLed and started again.
    The script retries each send until answered, with the same idempotency key."""
    with piped_gateway.api() as api:
        fleet = Fleet(broker, provision(api, "gw-0", "gw-1"), tmp_path)
    fleet.start()
    views = [View("ws"), View("sse")]
    for view in views:
        view.cursor = BEGINNING
    followers = [
        Follower(views[0], f"ws://127.0.0.1:{piped_gateway.http_port}/ws", "ws"),
        Follower(views[1], f"{piped_gateway.url}/api/events", "sse"),
    ]
    accepted: dict[str, int] = {}
    try:
        wait_until(lambda: all(f.opens for f in followers), 10, "both clients following")
        with piped_gateway.api() as api:

            def send(n: int) -> bool:
                try:
                    response = api.post(
                        f"/api/devices/gw-{n % 2}/commands",
                        json={"name": "count", "args": {"n": n}},
                        headers={"Idempotency-Key": f"g-{n}"},
                    )
                except httpx.HTTPError:
                    return False  # no answer: the outcome is unknown, so send it again
                assert response.status_code in (202, 503), response.text
                if response.status_code == 202:
                    accepted[response.json()["id"]] = n
                return response.status_code == 202

            for n in range(60):
                if n == 30:
                    piped_gateway.stop(signal.SIGKILL)
                    piped_gateway.start()
                wait_until(partial(send, n), 30, f"send {n} answered")
        ids = set(accepted)
        wait_until(lambda: all(v.finished(ids) for v in views), 30, "both clients caught up")
    finally:
        for follower in followers:
            follower.close()
        fleet.stop()

    data_dir = tmp_path / "store"
    settle(data_dir, 10)
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    outcome = ledger(
        "gateway SIGKILLed and restarted under a WS and an SSE client",
        data_dir,
        runs,
        accepted=accepted,
        strays=strays,
    ).note(f"reconnects: ws {followers[0].opens - 1}, sse {followers[1].opens - 1}")
    for view in views:
        view.judge(outcome, ids, data_dir)
    check(outcome)
    assert len(stored) == 60
    assert all(f.opens >= 2 for f in followers), "a client did not come back by itself"


def test_a_fresh_websocket_sees_the_events_of_its_own_first_commands(
    gateway: RunningGateway, fleet: Fleet
) -> None:
    """Reads are slow (the read pool is busy: held here by four blocked reads) while a client
    connects without a cursor and sends five commands. Once reads flow again the client must
    get all their events: they all happened after it connected. (Found by this suite: "now" was
    read only when the streamer first ran, after sends it had already handled; fixed in
    a4fd31f by fixing "now" at connect.)"""
    store = gateway.bridge.store
    data_dir = store.data_dir
    busy = threading.Event()

    def held(conn: Any) -> bool:
        return busy.wait(20)

    blockers = [store.read(i, held) for i in range(store.shard_count)]
    view = View("ws")
    refs: dict[Any, str] = {}

    def frame(ref: Any, n: int) -> str:
        return json.dumps(
            {"type": "send", "ref": ref, "device": "ws-0", "name": "count", "args": {"n": n}}
        )

    def finished_in_store() -> bool:
        rows = store_reader.commands(data_dir).values()
        mine = [c for c in rows if c["device_id"] == "ws-0"]
        return len(mine) == 5 and all(c["finished_at"] for c in mine)

    try:
        with ws_connect(gateway.ws_url, TOKENS[Role.OPERATOR]) as conn:
            for n in range(5):
                conn.send(frame(n, n))
            # Today the five are accepted and finish while reads are held. A server that pins
            # "now" before it reads any frame may hold them until reads flow instead: both are
            # fine, and then this bounded wait just ends at its deadline.
            done_while_held = eventually(finished_in_store, 5, "the five finished")
            busy.set()
            for blocker in blockers:
                blocker.result(10)
            conn.send(frame("fence", 99))
            for _ in range(300):  # same device, same shard: the fence's events come last
                message = json.loads(conn.recv(timeout=10))
                if message["type"] == "accepted":
                    refs[message["ref"]] = message["command"]["id"]
                elif message["type"] == "event":
                    view.add(message["id"], message["kind"], message["data"])
                    fence = refs.get("fence")
                    if fence and view.states.get(fence, [])[-1:] == ["succeeded"]:
                        break
    finally:
        busy.set()
    ids = {command_id for ref, command_id in refs.items() if ref != "fence"}
    stored = store_reader.commands(data_dir)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    outcome = ledger(
        "WS without a cursor: events of the first commands sent (slow reads)",
        data_dir,
        runs,
        accepted=ids,
        strays=strays,
        only=ids,
    ).note(f"finished while reads were held: {done_while_held}")
    view.judge(outcome, ids, data_dir)
    check(outcome)
    assert len(ids) == 5
