"""The bridge workers as an operator sees them: the dashboard's Workers region (a real headless
Chromium) and ``tether status``, over a real cluster of 2 workers and 1 gateway, each its own
process on a real Mosquitto. Each shows which worker owns each shard group (name, host, pid),
its shards and its lag; a SIGKILLed worker's group shows up taken over by the other; with every
worker dead each group says it has no owner."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from playwright.sync_api import Browser, Locator, expect

from broker_bridge.sharding import shard_for
from mosquitto.process import free_port
from tests.support.brokers import BrokerHandle
from tests.support.cluster import Cluster
from tests.support.processes import ADMIN_TOKEN, GatewayProcess
from tests.support.waiting import wait_until
from tests.test_dashboard_browser import ARTIFACTS, browser, console_errors
from tether_cli.client import format_workers
from ui_gateway.openapi import SCHEMAS

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with the other dashboard tests

pytestmark = pytest.mark.broker

TETHER = [sys.executable, "-m", "tether_cli"]
SHARDS = {0: [0, 2], 1: [1, 3]}  # 4 shards in 2 groups: a shard's group is shard mod 2
TIMEOUT_MS = 20_000  # a takeover waits 3 s for the lease to stay free; the page polls every 2 s


@pytest.fixture
def cluster(broker: BrokerHandle, tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(broker, tmp_path, free_port(), workers=2, gateways=1, shards=4, groups=2)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _commit_in_every_shard(cluster: Cluster) -> None:
    """A command to an (offline) device in each shard: each owner has committed events."""
    devices = {}
    for n in range(1000):
        devices.setdefault(shard_for(f"wv-{n}", 4), f"wv-{n}")
        if len(devices) == 4:
            break
    with cluster.api() as api:
        for device in devices.values():
            assert api.post("/api/devices", json={"id": device}).status_code == 201
            sent = api.post(f"/api/devices/{device}/commands", json={"name": "echo"})
            assert sent.status_code == 202, sent.text


def test_the_workers_region_names_each_owner_then_shows_the_takeover(
    browser: Browser, cluster: Cluster
) -> None:
    pids = {name: cluster.procs[name].pid for name in ("worker-0", "worker-1")}
    host = socket.gethostname()
    _commit_in_every_shard(cluster)
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = console_errors(page)
    page.goto(f"{cluster.url}/#token={ADMIN_TOKEN}")
    expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=15_000)
    region = page.locator("#workers-panel")
    expect(region).to_be_visible(timeout=15_000)
    expect(region).to_have_attribute("aria-labelledby", "workers-title")
    expect(page.locator("#workers-title")).to_have_text("Workers")

    def group(g: int) -> Locator:
        return region.locator(f'#worker-list > li[data-group="{g}"]')

    # Both owners named, each with its host, pid, shards and lag.
    for g in (0, 1):
        worker = f"worker-{g}"
        expect(group(g)).to_have_attribute("data-owner", worker, timeout=TIMEOUT_MS)
        expect(group(g)).to_have_attribute("data-state", "owned")
        expect(group(g).locator("h4")).to_have_text(f"Group {g}")
        expect(group(g).locator('[data-field="owner"]')).to_have_text(worker)
        expect(group(g).locator('[data-field="host"]')).to_have_text(f"{host} · pid {pids[worker]}")
        shards = ", ".join(map(str, SHARDS[g]))
        expect(group(g).locator('[data-field="shards"]')).to_have_text(shards)
        lag = group(g).locator('[data-field="lag"]')
        expect(lag).to_have_text("0 events")  # the gateway's feed has caught up with each shard
        expect(lag).to_have_attribute("title", " · ".join(f"shard {s}: 0" for s in SHARDS[g]))
        expect(group(g).locator('[data-field="age"]')).to_have_text(re.compile(r"^\d+\.\d s old$"))
        expect(group(g).locator('[data-field="handover"]')).to_be_hidden()
    expect(region.locator('[data-field="summary"]')).to_have_text("2 groups · 2 workers")
    expect(region).to_have_attribute("data-state", "ok")

    # worker-0 SIGKILLed: its group is taken over by worker-1, and the region says so.
    cluster.kill("worker-0")
    expect(group(0)).to_have_attribute("data-owner", "worker-1", timeout=TIMEOUT_MS)
    expect(group(0)).to_have_attribute("data-state", "owned")
    expect(group(0).locator('[data-field="host"]')).to_have_text(f"{host} · pid {pids['worker-1']}")
    expect(group(0).locator('[data-field="shards"]')).to_have_text("0, 2")
    handover = group(0).locator('[data-field="handover"]')
    expect(handover).to_be_visible()
    expect(handover).to_have_text(re.compile(r"^Taken over from worker-0 at \d\d:\d\d:\d\d$"))
    expect(region.locator('[role="status"]')).to_contain_text(
        "Group 0 taken over by worker-1 from worker-0."
    )
    expect(group(1)).to_have_attribute("data-owner", "worker-1")
    expect(group(1).locator('[data-field="handover"]')).to_be_hidden()
    expect(region.locator('[data-field="summary"]')).to_have_text("2 groups · 1 worker")
    ARTIFACTS.mkdir(exist_ok=True)
    region.screenshot(path=str(ARTIFACTS / "dashboard-workers.png"))

    # At 390 px the region fits the screen: nothing wider than the page.
    narrow = browser.new_page(viewport={"width": 390, "height": 844})
    narrow.goto(f"{cluster.url}/#token={ADMIN_TOKEN}")
    cards = narrow.locator("#worker-list > li")
    expect(cards).to_have_count(2, timeout=15_000)
    expect(cards.first).to_have_attribute("data-owner", "worker-1")
    narrow.locator("#workers-panel").scroll_into_view_if_needed()
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    for card in cards.all():
        box = card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    narrow.locator("#workers-panel").screenshot(path=str(ARTIFACTS / "dashboard-workers-390px.png"))
    narrow.close()

    # worker-1 SIGKILLed too: no group has an owner, and each says so.
    cluster.kill("worker-1")
    for g in (0, 1):
        expect(group(g)).to_have_attribute("data-state", "unowned", timeout=TIMEOUT_MS)
        expect(group(g).locator('[data-field="owner"]')).to_have_text("No owner — taking over")
        expect(group(g)).not_to_have_attribute("data-owner", re.compile(".*"))
        expect(group(g).locator("dl.worker-facts")).to_be_hidden()
    expect(region).to_have_attribute("data-state", "degraded")
    expect(region.locator('[data-field="summary"]')).to_have_text(
        "2 groups without an owner · 0 workers"
    )
    expect(region.locator('[role="status"]')).to_contain_text("Group 1: no owner, taking over.")
    assert errors == []
    page.close()


def test_a_silent_owner_is_named_as_silent(
    browser: Browser, gateway_process: GatewayProcess
) -> None:
    """An owner whose status stopped (a hung worker: its lease still held) is not shown as a
    live owner: rendered by the dashboard's own module, from a `stale` entry."""
    page = browser.new_page()
    page.goto(f"{gateway_process.url}/#token={ADMIN_TOKEN}")
    shown = page.evaluate(
        """async () => {
          const { createWorkersPanel } = await import('/static/workers.js');
          const panel = createWorkersPanel({ now: () => Date.parse('2026-11-29T12:00:30Z') });
          panel.render([
            { group: 0, owner: 'w-a', worker: 'w-a', pid: 7, host: 'h', shards: [0, 2],
              since: '2026-11-29T12:00:00Z', status_age_seconds: 14.2, stale: true,
              events_behind: { 0: 3, 2: null } },
            { group: 1, owner: null },
            { group: 'x' },
          ]);
          const li = (g) => panel.element.querySelector(`li[data-group="${g}"]`);
          return {
            groups: panel.element.querySelectorAll('li').length,
            state0: li(0).dataset.state,
            owner0: li(0).querySelector('[data-field="owner"]').textContent,
            lag0: li(0).querySelector('[data-field="lag"]').textContent,
            lagTitle: li(0).querySelector('[data-field="lag"]').title,
            age0: li(0).querySelector('[data-fact="age"]').dataset.tone,
            state1: li(1).dataset.state,
            summary: panel.element.querySelector('[data-field="summary"]').textContent,
          };
        }"""
    )
    assert shown == {
        "groups": 2,
        "state0": "stale",
        "owner0": "w-a: silent — taking over",
        "lag0": "3 events",
        "lagTitle": "shard 0: 3 · shard 2: unknown",
        "age0": "warn",
        "state1": "unowned",
        "summary": "2 groups without an owner · 0 workers",
    }
    page.close()


def _status(cluster: Cluster) -> str:
    return subprocess.run(
        [*TETHER, "status", "--url", cluster.url, "--token", ADMIN_TOKEN],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def _status_once(cluster: Cluster, shows: Callable[[str], bool], what: str) -> str:
    """``tether status`` run until its output ``shows`` what the test waits for."""

    def attempt() -> str | None:
        out = _status(cluster)
        return out if shows(out) else None

    found: str = wait_until(attempt, timeout=20, what=what)
    return found


def _owned_line(group: int, worker: str, pid: int) -> re.Pattern[str]:
    shards = ",".join(map(str, SHARDS[group]))
    host = re.escape(socket.gethostname())
    return re.compile(
        rf"^  group {group}   {worker} on {host} pid {pid}  shards {shards}  lag \d+ events?"
        rf"  status \d+(\.\d+)? s old$",
        re.MULTILINE,
    )


def _documented_workers(cluster: Cluster) -> list[dict[str, Any]]:
    """``/api/fleet``'s workers, each checked against the OpenAPI document's Worker schema."""
    with cluster.api() as api:
        workers: list[dict[str, Any]] = api.get("/api/fleet").json()["workers"]
    validator = jsonschema_rs.validator_for(SCHEMAS["Worker"])
    for worker in workers:
        validator.validate(worker)
    return workers


def test_tether_status_prints_each_group_its_owner_shards_and_lag(cluster: Cluster) -> None:
    pids = {name: cluster.procs[name].pid for name in ("worker-0", "worker-1")}
    _commit_in_every_shard(cluster)
    owned = _documented_workers(cluster)
    assert [(w["group"], w["owner"], w["pid"], w["shards"]) for w in owned] == [
        (0, "worker-0", pids["worker-0"], SHARDS[0]),
        (1, "worker-1", pids["worker-1"], SHARDS[1]),
    ]
    out = _status(cluster)
    assert "\nworkers  2 groups, 2 workers\n" in out, out
    assert _owned_line(0, "worker-0", pids["worker-0"]).search(out), out
    assert _owned_line(1, "worker-1", pids["worker-1"]).search(out), out

    cluster.kill("worker-0")
    taken_over = _owned_line(0, "worker-1", pids["worker-1"])
    out = _status_once(
        cluster,
        lambda o: taken_over.search(o) is not None,
        "tether status showing group 0 taken over by worker-1",
    )
    assert "\nworkers  2 groups, 1 worker\n" in out, out
    assert _owned_line(1, "worker-1", pids["worker-1"]).search(out), out

    cluster.kill("worker-1")
    out = _status_once(
        cluster,
        lambda o: o.count("NO OWNER") == 2,
        "tether status showing no owner for either group",
    )
    assert "\nworkers  2 groups, 0 workers, 2 without an owner (taking over)\n" in out, out
    assert "  group 0   NO OWNER: taking over\n  group 1   NO OWNER: taking over" in out, out
    assert _documented_workers(cluster) == [
        {"group": 0, "owner": None},
        {"group": 1, "owner": None},
    ]


def test_status_names_a_silent_owner_and_an_unknown_lag() -> None:
    lines = format_workers(
        [
            {"group": 1, "owner": None},
            {"group": 2, "owner": "w-b", "shards": [1], "events_behind": {}},
            {
                "group": 0,
                "owner": "w-a",
                "worker": "w-a",
                "host": "h",
                "pid": 7,
                "shards": [0, 2],
                "status_age_seconds": 14.2,
                "stale": True,
                "events_behind": {"0": None, "2": None},
            },
        ]
    )
    assert lines == [
        "\nworkers  3 groups, 1 worker, 2 without an owner (taking over)",
        "  group 0   w-a on h pid 7  shards 0,2  lag unknown  status 14.2 s old"
        "  SILENT: taking over",
        "  group 1   NO OWNER: taking over",
        "  group 2   w-b  shards 1  lag 0 events",  # nothing committed yet: nothing to be behind
    ]
    assert format_workers([]) == []
