"""What a new user saw in the dashboard in the first hour (issue 20), in a real headless Chromium:
charts with the server's history and time ranges, latency as values, waiting for an offline device
apart from a slow device, "connected for", a device page, a hint when the target is offline, late
outcomes on command records, and the fleet table at 390 px. Screenshots go to ``artifacts/``."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.brokers import BrokerHandle
from tests.support.devices import DemoAgent
from tests.support.processes import ADMIN_TOKEN, GatewayProcess
from tests.support.waiting import wait_until
from tests.test_dashboard_browser import ARTIFACTS, browser, console_errors

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with the other dashboard tests

pytestmark = pytest.mark.broker


def _wait_state(api: httpx.Client, command_id: str, state: str) -> None:
    wait_until(
        lambda: api.get(f"/api/commands/{command_id}").json()["state"] == state,
        what=f"{command_id} {state}",
    )


def _open(browser: Browser, gateway: GatewayProcess, width: int, height: int) -> Page:
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{gateway.url}/#token={ADMIN_TOKEN}")
    expect(page.locator("body")).to_have_attribute("data-connection", "live", timeout=15_000)
    return page


def test_charts_history_latency_values_waits_and_the_device_page(
    browser: Browser, broker: BrokerHandle, gateway_process: GatewayProcess
) -> None:
    with gateway_process.api() as api, DemoAgent(broker, api, "pump-1"):
        for n in range(12):  # one at a time: none waits behind another
            sent = api.post(
                "/api/devices/pump-1/commands",
                json={"name": "sleep", "args": {"seconds": (20 + 3 * n) / 1000}},
            ).json()
            _wait_state(api, sent["id"], "succeeded")
        late = DemoAgent(broker, api, "late-1")  # provisioned, offline: its command waits
        waiting = api.post("/api/devices/late-1/commands", json={"name": "echo"}).json()["id"]
        _wait_state(api, waiting, "sent")
        with late:
            _wait_state(api, waiting, "succeeded")

        # The tab opens after all of it: the charts still show it, from the server's history.
        page = _open(browser, gateway_process, 1280, 1200)
        errors = console_errors(page)
        throughput = 'figure[data-chart="throughput"]'
        page.wait_for_function(
            f"Number(document.querySelector('{throughput} [data-value]').dataset.raw) > 0",
            timeout=15_000,
        )
        assert page.locator(f"{throughput} path.spark-line").first.get_attribute("d")
        expect(page.locator(f"{throughput} .chart-note")).to_contain_text("13 in 15 min")
        expect(page.locator(f"{throughput} .chart-axis-start")).to_have_text("\u221215 min")

        # Latency readings are values ("41.3 ms"), not bucket bounds ("≤ 100 ms").
        p50 = page.locator('figure[data-chart="latency"] [data-reading="p50"]')
        expect(p50).to_have_text(re.compile(r"^[\d.,]+ ms$"))
        hop = page.locator('#hop-table tr[data-hop="delivered_to_final"]')
        expect(hop.locator('td[data-col="count"]')).to_have_text("13")
        assert "≤" not in (page.locator("#hop-table").text_content() or "")
        expect(page.locator('#hop-table tr[data-hop="waiting_for_device"] th')).to_have_text(
            "Waiting for the device"
        )

        # Waiting offline is not a slow device: late-1 tops "Longest waits", not "Slowest".
        waits = page.locator('[data-list="waits"] .rank-item')
        expect(waits.first).to_have_attribute("data-device", "late-1", timeout=10_000)
        expect(page.locator('[data-list="slowest"] .rank-item').first).to_have_attribute(
            "data-device", "pump-1"
        )

        # An online device says how long it has been connected.
        seen = page.locator('#fleet-body tr[data-device="pump-1"] td[data-field="last_seen"]')
        expect(seen).to_contain_text("connected for")
        expect(
            page.locator('#fleet-body tr[data-device="late-1"] td[data-field="last_seen"]')
        ).not_to_contain_text("connected")

        # Time ranges.
        page.click('.chart-ranges button[data-range="1h"]')
        expect(page.locator('.chart-ranges button[data-range="1h"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(page.locator(f"{throughput} .chart-axis-start")).to_have_text("\u22121 h")
        expect(page.locator(f"{throughput} .chart-note")).to_contain_text("13 in hour")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-history.png"), full_page=True)

        # The device page, from the fleet table.
        page.click('#fleet-body tr[data-device="pump-1"] a.device-open')
        dialog = page.locator("#device-page")
        expect(dialog).to_be_visible()
        expect(page.locator("#device-page-title")).to_have_text("pump-1")
        expect(page.locator("#device-page-commands > li")).to_have_count(12)
        expect(page.locator("#device-page-presence li").first).to_contain_text("online")
        expect(dialog.locator('[data-fact="seen"]')).to_contain_text("connected for")
        assert page.url.endswith("#device=pump-1")
        page.screenshot(path=str(ARTIFACTS / "dashboard-device-page.png"), full_page=True)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert errors == []
        page.close()


def test_offline_hint_and_late_outcomes(browser: Browser, gateway_process: GatewayProcess) -> None:
    with gateway_process.api() as api:
        assert api.post("/api/devices", json={"id": "pump-7"}).status_code == 201
    page = _open(browser, gateway_process, 1280, 900)
    errors = console_errors(page)
    expect(page.locator('#fleet-body tr[data-device="pump-7"]')).to_have_attribute(
        "data-online", "false"
    )
    page.select_option("#console-device", "pump-7")
    page.fill("#console-name", "echo")
    page.fill("#console-ttl", "30")
    page.click("#console-send")
    expect(page.locator("#console-status")).to_contain_text(
        "pump-7 is offline; the command waits until it reconnects (TTL 30 s)"
    )

    # Late outcomes, as records will carry them: rendered by the dashboard's own modules.
    shown = page.evaluate(
        """async () => {
          const { CommandList } = await import('/static/commands.js');
          const { describeEvent } = await import('/static/eventlog.js');
          const base = { device: 'pump-7', name: 'reboot', args: {}, attempts: 1,
                         issued_at: '2026-11-29T12:03:00Z', times: { queued: '2026-11-29T12:03:00Z',
                         cancelled: '2026-11-29T12:03:01Z' }, state: 'cancelled' };
          const at = '2026-11-29T12:03:04Z';
          const records = [
            { ...base, id: 'c1', late: { status: 'succeeded', result: { ok: true }, at } },
            { ...base, id: 'c2', late: { status: 'received', at } },
            { ...base, id: 'c3', late: null },
            { ...base, id: 'c4' },
          ];
          const list = document.createElement('ol');
          list.id = 'late-demo';
          list.className = 'command-list';
          document.querySelector('#command-list').after(list);
          const cl = new CommandList({ list, empty: document.createElement('p'),
                                       title: document.createElement('span'), onCancel: () => {} });
          cl.setDevice('pump-7');
          for (const r of records) cl.upsert(r);
          const clock = new Date(Date.parse(at)).toLocaleTimeString('en-GB', { hour12: false });
          return {
            clock,
            late: [...list.querySelectorAll(':scope > li')].map(
              (li) => li.querySelector('.cmd-late')?.textContent ?? null),
            events: records.map((r) => describeEvent('command', r).summary),
          };
        }"""
    )
    clock = shown["clock"]
    by_id = dict(zip(["c4", "c3", "c2", "c1"], shown["late"], strict=True))  # newest id first
    assert by_id["c1"] == f'cancelled — but the device ran it at {clock}: succeeded {{"ok":true}}'
    assert by_id["c2"] == f"cancelled — but the device received it at {clock}"
    assert by_id["c3"] is None and by_id["c4"] is None
    assert shown["events"][0] == (
        f'reboot → cancelled — but the device ran it at {clock}: succeeded {{"ok":true}}'
    )
    assert shown["events"][2] == shown["events"][3] == "reboot → cancelled"
    answers = page.evaluate(
        """async () => {
          const { describeLate } = await import('/static/commands.js');
          const at = '2026-11-29T12:03:04Z';
          return [describeLate({ state: 'cancelled', late: { status: 'cancelled', at } }),
                  describeLate({ state: 'undeliverable', late: { status: 'expired', at } })];
        }"""
    )
    assert answers == [  # a device's answer that it did not run it never reads "ran it"
        f"and the device confirmed it at {clock}",
        f"and the device answered at {clock}: expired, not run",
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".card-console").screenshot(path=str(ARTIFACTS / "dashboard-offline-late.png"))
    assert errors == []
    page.close()


def test_fleet_table_is_usable_at_390px(
    browser: Browser, broker: BrokerHandle, gateway_process: GatewayProcess
) -> None:
    with gateway_process.api() as api, DemoAgent(broker, api, "greenhouse-sensor-00042"):
        page = _open(browser, gateway_process, 390, 844)
        row = page.locator('#fleet-body tr[data-device="greenhouse-sensor-00042"]')
        expect(row).to_have_attribute("data-online", "true")
        # Nothing is cut off: neither the page nor the table needs sideways scrolling, and every
        # column shown (the device, presence, connected/last seen, pending) is on screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        wrap = page.locator(".card-fleet .table-wrap")
        assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth"), wrap.evaluate(
            "el => [el.scrollWidth, el.clientWidth]"
        )
        shown = [c for c in page.locator("#fleet-table thead th").all() if c.is_visible()]
        labels = [(c.text_content() or "").strip().lower() for c in shown]
        assert labels[:2] == ["device", "online"] and "pending" in labels, labels
        for cell in shown + [c for c in row.locator("td").all() if c.is_visible()]:
            box = cell.bounding_box()
            assert box is not None
            assert box["x"] >= -0.5 and box["x"] + box["width"] <= 390.5, (
                cell.text_content(),
                box,
            )
        expect(row.locator('td[data-field="last_seen"]')).to_contain_text("connected for")
        row.scroll_into_view_if_needed()
        expect(row.locator('td[data-field="pending"]')).to_be_in_viewport()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-390px.png"), full_page=True)
        page.close()


def test_a_real_late_outcome_on_the_dashboard(
    browser: Browser, broker: BrokerHandle, gateway_process: GatewayProcess
) -> None:
    """Issue 13 end to end: a plain paho device gets a command, the operator cancels it (only
    `requested`: it was handed over), the device runs it anyway; the dashboard, live, says so."""
    from tests.support.brokers import Credentials
    from tether.protocol import AckMessage, AckStatus, decode_command, utc_now

    with gateway_process.api() as api:
        made = api.post("/api/devices", json={"id": "pump-7"}).json()
        creds = Credentials("pump-7", made["username"], made["password"])
        device = broker.device_client(creds, persistent=True).connect_ok()
        device.subscribe("tether/pump-7/cmd")
        device.publish("tether/pump-7/status", b'{"online": true}', retain=True)
        wait_until(lambda: api.get("/api/devices/pump-7").json()["online"], what="online")
        page = _open(browser, gateway_process, 1280, 900)
        errors = console_errors(page)
        page.select_option("#console-device", "pump-7")
        command_id = api.post("/api/devices/pump-7/commands", json={"name": "reboot"}).json()["id"]
        assert decode_command(device.next_message().payload).id == command_id
        _wait_state(api, command_id, "sent")
        cancelled = api.post(f"/api/commands/{command_id}/cancel").json()
        assert (cancelled["state"], cancelled["cancel"]) == ("cancelled", "requested")
        for status in (AckStatus.RECEIVED, AckStatus.SUCCEEDED):
            ack = AckMessage(command_id, status, utc_now(), result={"rebooted": True})
            device.publish("tether/pump-7/ack", ack.encode())
        late = page.locator("#command-list .cmd-late").first
        expect(late).to_contain_text("cancelled — but the device ran it at")
        expect(late).to_contain_text('succeeded {"rebooted":true}')
        record = api.get(f"/api/commands/{command_id}").json()
        assert record["state"] == "cancelled" and record["late"]["status"] == "succeeded"
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".card-console").screenshot(path=str(ARTIFACTS / "dashboard-late-real.png"))
        assert errors == []
        page.close()
        device.disconnect()
