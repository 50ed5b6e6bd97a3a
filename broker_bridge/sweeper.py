"""The delivery policy's clock for one shard owner: due commands every ``sweep_interval``,
old events pruned now and then, and the owner's status for gateways and ``tether status``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime

from broker_bridge.outbound import Outbound
from broker_bridge.policy import DeliveryPolicy
from broker_bridge.store import jobs
from broker_bridge.store.sharded import ShardedStore

log = logging.getLogger(__name__)

PRUNE_EVERY = 60  # sweeps


def _now() -> datetime:
    return datetime.now(UTC)


class Sweeper:
    def __init__(
        self,
        store: ShardedStore,
        outbound: Outbound,
        policy: DeliveryPolicy,
        connected: threading.Event,
        *,
        interval: float,
        event_retention: int,
        heartbeat: Callable[[], None],
        heartbeat_every: int,
    ) -> None:
        self.store = store
        self.outbound = outbound
        self.policy = policy
        self.connected = connected
        self.interval = interval
        self.event_retention = event_retention
        self.heartbeat = heartbeat
        self.heartbeat_every = max(1, heartbeat_every)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bridge-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def sweep_once(self) -> list[Future[list[jobs.Delivery]]]:
        futures = []
        for shard in self.store.owned:
            future = self.store.write_shard(
                shard, lambda tx: jobs.sweep_due(tx, _now(), self.policy)
            )
            future.add_done_callback(self._deliver)
            futures.append(future)
        return futures

    def _deliver(self, deliveries: Future[list[jobs.Delivery]]) -> None:
        if deliveries.exception() is None:
            self.outbound.deliver_all(deliveries.result())

    def _run(self) -> None:
        ticks = 0
        while not self._stopping.wait(self.interval):
            ticks += 1
            if ticks % self.heartbeat_every == 0:
                self.heartbeat()
            if not self.connected.is_set():
                continue
            for future in self.sweep_once():
                try:
                    future.result(timeout=30)
                except Exception as exc:
                    log.warning("sweep failed: %s", exc)
            if ticks % PRUNE_EVERY == 0:
                for shard in self.store.owned:
                    self.store.write_shard(
                        shard, lambda tx: jobs.prune_events(tx, self.event_retention)
                    )
