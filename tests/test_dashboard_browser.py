"""The dashboard in a real headless Chromium (Debian's), driven by Playwright.

Send a command from the console and see it reach `succeeded`; restart the gateway process; the page
reconnects by itself and shows what happened while it was away. A screenshot is kept in
``artifacts/`` (ignored by git).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devices.agent import DeviceAgent
from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.processes import ADMIN_TOKEN, GatewayProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.broker

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, (
        "Debian's chromium is needed: apt-get install chromium (scripts/bootstrap.sh does)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def agent(broker: BrokerHandle, gateway_process: GatewayProcess) -> Iterator[DeviceAgent]:
    with gateway_process.api() as api, DemoAgent(broker, api, "sim-00001") as running:
        yield running


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_console_send_then_gateway_restart_then_catch_up(
    browser: Browser, gateway_process: GatewayProcess, agent: DeviceAgent
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = console_errors(page)
    page.goto(f"{gateway_process.url}/#token={ADMIN_TOKEN}")
    expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=15_000)
    expect(page.locator('#fleet-body tr[data-device="sim-00001"]')).to_have_attribute(
        "data-online", "true"
    )
    assert "token" not in page.url  # the token left the address bar

    page.select_option("#console-device", "sim-00001")
    page.fill("#console-name", "echo")
    page.fill("#console-args", '{"from": "the browser"}')
    page.click("#console-send")
    sent = page.locator("#command-list > li").first
    expect(sent).to_have_attribute("data-state", "succeeded", timeout=15_000)
    for hop in ("queued", "sent", "delivered"):
        expect(sent.locator(f'[data-hop="{hop}"]')).to_have_count(1)

    # The gateway goes away; the page notices and keeps trying.
    gateway_process.stop()
    expect(page.locator("body")).to_have_attribute(
        "data-connection", "reconnecting", timeout=15_000
    )
    page.context.set_offline(True)  # hold the page back until something has happened without it
    gateway_process.start()
    with gateway_process.api() as api:
        missed = api.post(
            "/api/devices/sim-00001/commands", json={"name": "echo", "args": {"n": 2}}
        ).json()
        wait_until(lambda: api.get(f"/api/commands/{missed['id']}").json()["state"] == "succeeded")
    page.context.set_offline(False)

    expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=30_000)
    missed_entry = page.locator(
        f'#event-log li[data-kind="command"] [title="command {missed["id"]}"]'
    )
    expect(missed_entry).to_have_count(4, timeout=15_000)  # queued, sent, delivered, succeeded
    expect(missed_entry.first).to_contain_text("echo → succeeded")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert [
        e
        for e in errors
        if "ERR_INTERNET_DISCONNECTED" not in e
        and "WebSocket" not in e
        and "Failed to load resource" not in e
    ] == []
    page.close()


def test_monitoring_panel_under_load(
    browser: Browser, broker: BrokerHandle, gateway_process: GatewayProcess, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tether_cli.fleet import numbered_ids, provision_fleet

    with gateway_process.api() as api:
        provision_fleet(api, numbered_ids(20), tmp_path / "fleet.json")
    with (tmp_path / "sim.log").open("wb") as log:
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tether_cli",
                "simulate",
                "20",
                "--credentials",
                str(tmp_path / "fleet.json"),
                "--broker",
                f"{broker.host}:{broker.port}",
                "--latency",
                "0.002",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    errors = console_errors(page)
    try:
        page.goto(f"{gateway_process.url}/#token={ADMIN_TOKEN}")
        expect(page.locator('figure[data-chart="online"] [data-value]')).to_have_text(
            "20", timeout=30_000
        )
        with gateway_process.api() as api:
            for n in range(300):
                api.post(
                    f"/api/devices/sim-{n % 20 + 1:05d}/commands",
                    json={"name": "echo", "args": {"n": n}},
                )
            wait_until(
                lambda: api.get("/api/fleet").json()["commands_by_state"].get("succeeded") == 300,
                60,
            )
        end_to_end = page.locator('#hop-table tr[data-hop="end_to_end"] td[data-col="count"]')
        expect(end_to_end).to_have_text("300", timeout=15_000)
        expect(page.locator('#broker-panel [data-broker-field="connected"]')).to_have_text("yes")
        expect(page.locator('figure[data-chart="throughput"] path.spark').first).to_be_attached()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-monitoring.png"), full_page=True)
        assert errors == []
    finally:
        page.close()
        simulator.terminate()
        simulator.wait(20)
