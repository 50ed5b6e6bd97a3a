"""Chaos: a bridge worker or a gateway SIGKILLed mid-burst at 200 commands/s.

The server side runs as ``tether up`` runs it: bridge workers (each the owner of shard groups,
by lease) and stateless gateways sharing the HTTP port, every one its own process. A script
sends over REST at 200 commands/s, each send retried with its Idempotency-Key until answered;
a WebSocket client follows the event stream and reconnects from its cursor. Checked: nothing
lost, nothing run twice, nothing unexpected; each device ran its commands in acceptance order;
the stream client saw every committed event once, in order; a killed owner's groups are taken
over within 5 s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from mosquitto.process import free_port
from tests.support import store_reader
from tests.support.brokers import BrokerHandle
from tests.support.chaos import Fleet, Outcome, check, eventually, ledger, runs_by_id, settle
from tests.support.cluster import Cluster
from tests.support.processes import ADMIN_TOKEN
from tests.support.waiting import wait_until
from tests.test_chaos_streams import BEGINNING, Follower, View, provision

pytestmark = [pytest.mark.chaos, pytest.mark.broker]

DEVICES = [f"px-{i}" for i in range(8)]
RATE = 200.0
BURST = 600
KILL_AT = 200  # one second into the burst


class Burst:
    """Sends ``count`` commands at ``rate``/s from a few threads, each retried with its
    Idempotency-Key until a 202 (a lost answer, a 503 while a group has no owner)."""

    def __init__(self, url: str, count: int, rate: float) -> None:
        self.url, self.count, self.rate = url, count, rate
        self.accepted: dict[str, int] = {}
        self.retries = 0
        self.lock = threading.Lock()
        self.local = threading.local()
        self.clients: list[httpx.Client] = []

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self.local, "client", None)
        if client is None:
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            client = httpx.Client(base_url=self.url, headers=headers, timeout=15)
            self.local.client = client
            with self.lock:
                self.clients.append(client)
        return client

    def send(self, n: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                response = self._client().post(
                    f"/api/devices/{DEVICES[n % len(DEVICES)]}/commands",
                    json={"name": "count", "args": {"n": n}},
                    headers={"Idempotency-Key": f"p-{n}"},
                )
            except httpx.HTTPError:
                response = None  # no answer: the outcome is unknown, so send it again
            if response is not None and response.status_code == 202:
                with self.lock:
                    self.accepted[response.json()["id"]] = n
                return
            assert response is None or response.status_code == 503, response.text
            with self.lock:
                self.retries += 1
            self.local.client = None  # a fresh connection: the old one may be to a dead gateway
        raise AssertionError(f"send {n} never answered")

    def run(self, at: dict[int, object]) -> None:
        """Pace the sends; call ``at[n]()`` when the schedule reaches ``n``."""
        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            futures = []
            for n in range(self.count):
                wait = start + n / self.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)  # pacing the load at its rate, not waiting for a condition
                if n in at:
                    at[n]()  # type: ignore[operator]
                futures.append(pool.submit(self.send, n, time.monotonic() + 60))
            try:
                for future in futures:
                    future.result()
            finally:
                for client in self.clients:
                    client.close()


@pytest.fixture
def cluster_2x1(broker: BrokerHandle, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(broker, tmp_path, free_port(), workers=2, gateways=1)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_1x2(broker: BrokerHandle, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(broker, tmp_path, free_port(), workers=1, gateways=2)
    cluster.start()
    yield cluster
    cluster.stop()


def _in_acceptance_order(fleet: Fleet, data_dir: Path, outcome: Outcome) -> None:
    """Each device's first runs must follow the order its commands were accepted in."""
    stored = store_reader.commands(data_dir)
    for device_id, ran in fleet.order.items():
        accepted = [
            int(json.loads(row["args"])["n"])
            for row in sorted(stored.values(), key=lambda r: r["seq"])  # one shard per device
            if row["device_id"] == device_id
        ]
        first_runs = list(dict.fromkeys(ran))
        if first_runs != accepted:
            outcome.unexpected[f"order of {device_id}"] = f"ran {first_runs}, accepted {accepted}"


def _run_fault(
    broker: BrokerHandle,
    cluster: Cluster,
    tmp_path: Path,
    fault: str,
    kill: str,
    then: dict[int, object] | None = None,
) -> tuple[Outcome, float | None, int]:
    with cluster.api() as api:
        fleet = Fleet(broker, provision(api, *DEVICES), tmp_path / "journals")
    fleet.start()
    view = View("ws")
    view.cursor = BEGINNING
    follower = Follower(view, f"ws://127.0.0.1:{cluster.http_port}/ws", "ws")
    burst = Burst(cluster.url, BURST, RATE)
    killed_at: list[float] = []

    def strike() -> None:
        cluster.kill(kill)
        killed_at.append(time.monotonic())

    try:
        burst.run({KILL_AT: strike, **(then or {})})
        taken_over = None
        if kill.startswith("worker-"):
            wait_until(
                lambda: all(o is not None and o != kill for o in cluster.owners().values()),
                30,
                f"{kill}'s groups owned by another worker",
            )
            taken_over = time.monotonic() - killed_at[0]
        ids = set(burst.accepted)
        store = tmp_path / "store"
        settle(store, 30, ids)
        eventually(lambda: view.finished(ids), 30, "the stream client caught up")  # else judged
    finally:
        follower.close()
        fleet.stop()
    stored = store_reader.commands(store)
    runs, strays = runs_by_id(stored, fleet.runs, "n")
    outcome = ledger(fault, store, runs, accepted=burst.accepted, strays=strays).note(
        f"{BURST} sends at {RATE:g}/s, {burst.retries} retried with their keys; "
        f"ws reconnects {follower.opens - 1}"
    )
    view.judge(outcome, ids, store)
    _in_acceptance_order(fleet, store, outcome)
    assert len(stored) == BURST
    return outcome, taken_over, follower.opens


def test_worker_sigkilled_mid_burst_its_groups_taken_over(
    broker: BrokerHandle, cluster_2x1: Cluster, tmp_path: Path
) -> None:
    outcome, taken_over, _ = _run_fault(
        broker,
        cluster_2x1,
        tmp_path,
        "bridge worker SIGKILLed mid-burst at 200/s (2 workers, 1 gateway)",
        "worker-0",
    )
    assert taken_over is not None, "worker-0's groups were not taken over"
    outcome.note(f"its group taken over by worker-1 in {taken_over:.1f} s")
    check(outcome)
    assert taken_over <= 5.0


def test_gateway_sigkilled_mid_burst_the_other_serves(
    broker: BrokerHandle, cluster_1x2: Cluster, tmp_path: Path
) -> None:
    """gateway-0 is killed (a new gateway-2 starts), later gateway-1: the stream client's
    gateway is killed under it whichever one the kernel gave it."""

    def second_strike() -> None:
        cluster_1x2.kill("gateway-1")

    def replacement() -> None:
        cluster_1x2.spawn("gateway-2")

    outcome, _, opens = _run_fault(
        broker,
        cluster_1x2,
        tmp_path,
        "gateways SIGKILLed mid-burst at 200/s (1 worker, 2 gateways on one port, one at a time)",
        "gateway-0",
        {KILL_AT + 1: replacement, 2 * KILL_AT: second_strike},
    )
    check(outcome)
    assert opens >= 2, "the stream client's gateway was never killed under it"
