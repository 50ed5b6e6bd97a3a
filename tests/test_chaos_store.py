"""Chaos: the store's disk refuses writes for a moment, and one shard turns read-only.

Disk full. There is no small filesystem to fill here (no mounts without privileges), so the
fault is made real at the system-call level instead: ``RLIMIT_FSIZE`` set to 0 on the running
gateway process (``prlimit``), after which every write(2) it makes to a regular file fails
(EFBIG). SQLite reports that at commit as an I/O error (``SQLITE_IOERR_WRITE``) where a full disk
gives ``SQLITE_FULL``: the same failure for the bridge (a commit that did not happen), in a real
process, with no test hook in it. Lifting the limit is the disk coming back.

Read-only shard. As root, file modes do not stop writes, and a read-only remount needs
privileges, so the test swaps one shard writer's connection for one opened with SQLite's
``mode=ro`` (a test-only hook on the in-process gateway): its commits then fail with
"attempt to write a readonly database", as on a read-only file, and the other shards go on.

Outcome in both: sends fail with ``503 unavailable`` and a message naming the shard, acks that
arrive meanwhile are kept (not PUBACKed) and retried, nothing accepted is lost, and the service
comes back by itself when the disk does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker_bridge.store.sharded import ShardedStore
from tests.support import store_reader
from tests.support.brokers import BrokerHandle, Credentials
from tests.support.chaos import Fleet, PipedGateway, check, ledger, metric, runs_by_id, settle
from tests.support.gateways import RunningGateway
from tests.support.waiting import wait_until
from ui_gateway.auth import Role

pytestmark = [pytest.mark.chaos, pytest.mark.broker]


def provision(api: httpx.Client, *ids: str) -> list[Credentials]:
    out = []
    for device_id in ids:
        created = api.post("/api/devices", json={"id": device_id})
        assert created.status_code == 201, created.text
        body = created.json()
        out.append(Credentials(device_id, body["username"], body["password"]))
    return out


def send(api: httpx.Client, device_id: str, n: int) -> httpx.Response:
    return api.post(
        f"/api/devices/{device_id}/commands",
        json={"name": "count", "args": {"n": n}},
        headers={"Idempotency-Key": f"key-{n}"},
    )


class Sends:
    """Every send and its answer: accepted ids, refused keys, anything else."""

    def __init__(self, api: httpx.Client) -> None:
        self.api = api
        self.accepted: dict[str, int] = {}  # command id -> n
        self.refused: dict[int, dict[str, Any]] = {}  # n -> error body
        self.other: list[tuple[int, int, str]] = []

    def send(self, device_id: str, n: int) -> int:
        response = send(self.api, device_id, n)
        if response.status_code == 202:
            self.accepted[response.json()["id"]] = n
        elif response.status_code == 503:
            self.refused[n] = response.json()
        else:
            self.other.append((n, response.status_code, response.text[:200]))
        return response.status_code


def refused_but_stored(data_dir: Path, refused: dict[int, Any]) -> list[str]:
    keys = {f"key-{n}" for n in refused}
    return [
        c["id"] for c in store_reader.commands(data_dir).values() if c["idempotency_key"] in keys
    ]


def test_disk_refusing_writes_then_back(
    broker: BrokerHandle, piped_gateway: PipedGateway, tmp_path: Path
) -> None:
    data_dir = tmp_path / "store"
    with piped_gateway.api() as api:
        fleet = Fleet(broker, provision(api, "disk-0", "disk-1", "disk-2"), tmp_path)
        fleet.start()
        try:
            sends = Sends(api)
            for n in range(12):
                assert sends.send(f"disk-{n % 3}", n) == 202
            settle(data_dir, 20)
            # disk-2 stays connected but holds its next 10 commands unrun (a device away would
            # get nothing now: its commands wait in the store, issue 13).
            fleet.hold("disk-2")
            for n in range(12, 22):
                assert sends.send("disk-2", n) == 202
            handed = {i for i, n in sends.accepted.items() if n >= 12}

            def states() -> dict[str, str]:
                return {i: api.get(f"/api/commands/{i}").json()["state"] for i in handed}

            wait_until(lambda: set(states().values()) <= {"sent", "delivered"}, 20, "handed over")
            before = states()
            pid = piped_gateway.worker_pid

            piped_gateway.disk_full()
            for n in range(22, 52):
                sends.send(f"disk-{n % 3}", n)
            fleet.release("disk-2")  # runs its 10 commands; their acks meet the fault
            wait_until(lambda: all(fleet.runs[n] for n in range(12, 22)), 20, "disk-2 caught up")
            wait_until(
                lambda: metric(api, "tether_bridge_messages_total", outcome="store_retries") >= 3,
                20,
                "acks retried",
            )
            during = states()
            retries = metric(api, "tether_bridge_messages_total", outcome="store_retries")
            piped_gateway.disk_back()

            # Back by itself: the same process takes sends again (a retry reuses its key).
            probe = Sends(api)
            wait_until(lambda: probe.send("disk-0", 1000) == 202, 20, "sends accepted again")
            assert piped_gateway.worker_pid == pid
            sends.accepted.update(probe.accepted)
            settle(data_dir, 15)  # under the 30 s redelivery: only retried acks count
            stored = store_reader.commands(data_dir)
            runs, strays = runs_by_id(stored, fleet.runs, "n")
            outcome = ledger(
                "store disk refusing writes (RLIMIT_FSIZE=0 on the worker), then back",
                data_dir,
                runs,
                accepted=sends.accepted,
                strays=strays,
            ).note(
                f"{len(sends.refused)} sends refused 503 during the fault, "
                f"{retries:g} ack/status writes retried"
            )
            for command_id in refused_but_stored(data_dir, sends.refused):
                outcome.unexpected[command_id] = "refused with 503, yet stored"
        finally:
            fleet.stop()
    check(outcome)
    assert sends.other == []
    assert set(sends.refused) == set(range(22, 52)), "every send during the fault is refused"
    for body in sends.refused.values():
        assert body["error"]["code"] == "unavailable"
        assert "could not store" in body["error"]["message"], body
    assert during == before  # acks that met the fault changed nothing until it lifted


@contextmanager
def read_only(store: ShardedStore, shard: int) -> Iterator[None]:
    """Test-only hook: the shard's writer commits through a ``mode=ro`` connection."""
    writer = store.writers[shard]
    original = writer._conn
    ro = sqlite3.connect(
        f"file:{writer.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    ro.row_factory = sqlite3.Row  # as the writer's own connection
    writer._conn = ro
    try:
        yield
    finally:
        writer._conn = original
        writer.submit(lambda tx: None).result(10)  # a batch on the real connection: swapped back
        ro.close()


def test_one_shard_read_only_for_a_moment(
    broker: BrokerHandle, gateway: RunningGateway, tmp_path: Path
) -> None:
    store: ShardedStore = gateway.bridge.store
    data_dir = store.data_dir
    candidates = [f"ro-{i:02d}" for i in range(64)]
    on_zero = [d for d in candidates if store.shard_of(d) == 0][:2]
    elsewhere = [d for d in candidates if store.shard_of(d) != 0][:2]
    with gateway.client(Role.ADMIN) as api:
        fleet = Fleet(broker, provision(api, *on_zero, *elsewhere), tmp_path)
        fleet.start()
        try:
            sends = Sends(api)
            late = on_zero[0]
            fleet.hold(late)  # connected, but it runs nothing until the shard is read-only
            for n in range(10):
                assert sends.send(late, n) == 202

            def states() -> dict[str, str]:
                return {i: api.get(f"/api/commands/{i}").json()["state"] for i, n in
                        sends.accepted.items() if n < 10}  # fmt: skip

            wait_until(lambda: set(states().values()) <= {"sent", "delivered"}, 20, "handed over")
            before = states()

            with read_only(store, 0):
                codes = {d: [sends.send(d, 10 + 10 * k + j) for j in range(5)]
                         for k, d in enumerate([*on_zero, *elsewhere])}  # fmt: skip
                fleet.release(late)  # its acks meet the read-only shard
                wait_until(lambda: all(fleet.runs[n] for n in range(10)), 20, f"{late} ran")
                wait_until(lambda: gateway.bridge.stats["store_retries"] >= 3, 20)
                listed = api.get("/api/devices").json()
                during = states()

            probe = Sends(api)  # a retry reuses its key
            wait_until(lambda: probe.send(on_zero[1], 100) == 202, 20, "shard 0 takes sends")
            sends.accepted.update(probe.accepted)
            settle(data_dir, 15)  # under the 30 s redelivery: only retried acks count
            stored = store_reader.commands(data_dir)
            runs, strays = runs_by_id(stored, fleet.runs, "n")
            outcome = ledger(
                "one shard read-only for a moment (mode=ro writer connection)",
                data_dir,
                runs,
                accepted=sends.accepted,
                strays=strays,
            ).note(f"{len(sends.refused)} sends to that shard refused 503; other shards served")
            for command_id in refused_but_stored(data_dir, sends.refused):
                outcome.unexpected[command_id] = "refused with 503, yet stored"
        finally:
            fleet.stop()
    check(outcome)
    assert all(c == [503] * 5 for d, c in codes.items() if d in on_zero), codes
    assert all(c == [202] * 5 for d, c in codes.items() if d in elsewhere), codes
    assert all(s["ok"] for s in listed["shards"])  # reads go on
    assert during == before  # nothing moved while the shard refused writes
    for body in sends.refused.values():
        assert body["error"]["code"] == "unavailable"
        assert "shard 0" in body["error"]["message"] and "readonly" in body["error"]["message"]
