"""``tether worker``: a bridge worker process, owning the shard groups whose leases it holds.

A worker takes its share of the groups (``groups / workers``, the ones its index prefers
first) as soon as their leases are free, and any other group that has stayed free for
``takeover_after`` seconds: that is how a standby worker, or a survivor, takes over the groups
of a worker that died. For each group it holds, it runs a :class:`Bridge` with the group's own
persistent MQTT session, so the broker hands it whatever queued for the group meanwhile.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, replace

from broker_bridge.bridge import Bridge, BridgeSettings
from broker_bridge.ownership import GroupLease
from broker_bridge.store.sharded import open_layout
from tether.settings import setting

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    bridge: BridgeSettings  # the group and client id are set per group
    name: str = setting(
        "", default_text="HOST-PID", flag="--worker-name", help="this worker's name"
    )
    index: int = setting(
        0, flag="--worker-index", help="which groups this worker prefers (g mod workers)"
    )
    workers: int = setting(1, help="how many workers share the groups (a worker's fair share)")
    takeover_after: float = setting(
        3.0, help="seconds a group stays free before a worker beyond its share takes it"
    )
    poll: float = 0.25  # how often a worker looks for free leases


class Worker:
    def __init__(self, settings: WorkerSettings) -> None:
        if not settings.name:
            settings = replace(settings, name=f"{socket.gethostname()}-{os.getpid()}")
        self.settings = settings
        base = settings.bridge
        self.shard_count, self.groups = open_layout(base.data_dir, base.shards, base.groups)
        self.leases = [GroupLease(base.data_dir, g) for g in range(self.groups)]
        self.owners: dict[int, Bridge] = {}
        self.changed = threading.Condition()
        self._free_since: dict[int, float] = {}
        self.ever_owned = False

    @property
    def share(self) -> int:
        return math.ceil(self.groups / max(1, self.settings.workers))

    def _preferred(self) -> list[int]:
        """This worker's own groups first (``g % workers == index``), then the others."""
        workers = max(1, self.settings.workers)
        mine = [g for g in range(self.groups) if g % workers == self.settings.index % workers]
        return mine + [g for g in range(self.groups) if g not in mine]

    def step(self, now: float) -> None:
        """Take what this worker should own now (one pass over the leases)."""
        preferred = self._preferred()
        for group in preferred:
            lease = self.leases[group]
            if lease.held:
                continue
            if not (group in preferred[: self.share] and len(self.owners) < self.share):
                if not lease.is_free():
                    self._free_since.pop(group, None)
                    continue
                if now - self._free_since.setdefault(group, now) < self.settings.takeover_after:
                    continue
            if lease.try_take({"worker": self.settings.name}):
                self._own(group, lease)
            self._free_since.pop(group, None)

    def _own(self, group: int, lease: GroupLease) -> None:
        base = self.settings.bridge
        settings = replace(
            base,
            group=group,
            groups=self.groups,
            worker=self.settings.name,
        )
        started = time.monotonic()
        try:
            bridge = Bridge(settings)
            bridge.start()
        except Exception:
            lease.release()
            if not self.ever_owned:
                raise  # a worker that cannot start at all (bad login, bad store) says why
            log.exception("could not start the owner of group %d; releasing it", group)
            return
        self.ever_owned = True
        log.info(
            "%s owns group %d (shards %s), started in %.2f s",
            self.settings.name,
            group,
            list(bridge.store.owned),
            time.monotonic() - started,
        )
        with self.changed:
            self.owners[group] = bridge
            self.changed.notify_all()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.step(time.monotonic())
                stop.wait(self.settings.poll)
        finally:
            self.close()

    def close(self) -> None:
        for group, bridge in sorted(self.owners.items()):
            try:
                bridge.stop()
            except Exception:
                log.exception("stopping the owner of group %d failed", group)
            self.leases[group].release()
        self.owners.clear()
