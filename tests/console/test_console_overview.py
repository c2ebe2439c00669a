"""The console at a glance (#15 item 1), in headless Chromium against a running engine: the health
banner, the overview nesting channels → routes → destinations, the message list's delivery states,
the DLQ's columns and bulk replay progress, traffic charts that survive a restart, and zh labels.
Screenshots are saved under test-artifacts/."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S
import pytest
from console_support import hl7, send_mllp, wait_for
from playwright.async_api import expect

from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.browser

CONFIG = """\
engine:
  store:
    path: var/overview.db
  admin:
    listen: 127.0.0.1:0
channels:
  - name: adt
    type: mllp
    mllp:
      listen: 127.0.0.1:0
destinations:
  - name: archive
    type: stub
    retry: {{max_attempts: 1}}
    stub: {{fail_first: 1}}
  - name: platform
    type: stub
    retry: {{max_attempts: 1000, initial_delay: 0.05, max_delay: 30s, jitter: 0, max_age: 2h}}
    stub: {{fail_first: 1000000}}
  - name: lab_system
    type: stub
    retry: {{initial_delay: 0.05, max_delay: 0.1, jitter: 0}}
    stub: {{fail_first: 4}}
  - name: registry
    type: {registry_type}
{registry}
routes:
  - routes/*.yaml
"""

ROUTES = {
    "adt_forward.yaml": """\
# Every ADT^A01 goes as received to the archive (first send fails: a dead letter) and to the platform
# (always fails: the destination goes down).
id: adt_forward
match:
  message_type: ADT^A01
passthrough: true
destinations: [archive, platform]
""",
    "oru_forward.yaml": """\
# ORU^R01 goes to the lab system, which fails four times and then recovers.
id: oru_forward
match:
  message_type: ORU^R01
passthrough: true
destinations: [lab_system]
""",
    "orm_forward.yaml": """\
# ORM^O01 goes to the registry (an HTTP receiver in the DLQ test).
id: orm_forward
match:
  message_type: ORM^O01
passthrough: true
destinations: [registry]
""",
}


@pytest.fixture
def start_engine(tmp_path: Path, make_config: Callable[[str], Config],
                 engine_factory: Callable[[Config], Any]) -> Callable[..., Any]:
    async def start(*, registry_url: str | None = None) -> Engine:
        (tmp_path / "routes").mkdir(exist_ok=True)
        for name, text in ROUTES.items():
            (tmp_path / "routes" / name).write_text(text, encoding="utf-8")
        if registry_url:
            registry = f'    http: {{url: "{registry_url}/r"}}\n    retry: {{max_attempts: 3}}'
            text = CONFIG.format(registry_type="http", registry=registry)
        else:
            text = CONFIG.format(registry_type="stub", registry="")
        engine: Engine = await engine_factory(make_config(text))
        return engine

    return start


def listen(engine: Engine) -> str:
    inbound = engine.channels["adt"].inbound
    assert inbound is not None
    return str(inbound.describe()["listen"])


def destination(engine: Engine, name: str) -> dict[str, Any]:
    return next(d for d in engine.delivery.status() if d["name"] == name)


async def test_the_overview_nests_destinations_under_channels_and_the_banner_links_to_what_is_wrong(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """One ADT message: the archive dead-letters it, the platform goes down. The landing page shows
    both under the channel and its route, with lights and counts; the banner on every page says
    what is wrong and links to it."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("OV1")])
    await wait_for(lambda: destination(engine, "platform")["state"] == "down"
                   and destination(engine, "archive")["dead_letters"] == 1)

    page = await open_console(engine.admin.url, hash="")
    await expect(page.locator("nav a[data-page=overview]")).to_have_class(re.compile("active"))
    card = page.locator("section.channel-card[data-channel=adt]")
    platform = card.locator("tr[data-destination=platform]")
    await expect(card.locator("td.route[data-route=adt_forward]")).to_contain_text("adt_forward")
    await expect(platform.locator(".light")).to_have_attribute("data-light", "down")
    await expect(platform.locator("td[data-counter=queued]")).to_have_text("1")
    await expect(platform.locator("[data-note=down]")).to_contain_text("down since")
    await expect(platform.locator("[data-note=next-probe]")).to_contain_text("next probe")
    await expect(platform.locator("[data-note=dead-due]")).to_contain_text("oldest item dead-lettered at")
    archive = card.locator("tr[data-destination=archive]")
    await expect(archive.locator(".light")).to_have_attribute("data-light", "ok")
    await expect(archive.locator("td[data-counter=dead]")).to_have_text("1")
    await expect(card.locator("td.route[data-route=oru_forward]")).to_contain_text("oru_forward")

    health = page.locator("#health")
    await expect(health).to_have_attribute("data-level", "bad")
    down = health.locator("a[data-health=dest-platform]")
    await expect(down).to_contain_text("Destination platform down: stub failure")
    await expect(health.locator("a[data-health=dead]")).to_have_text("1 dead letter(s) in the last hour")
    await screenshot(page, "console-overview")

    await down.click()
    await expect(page.locator("#destinations-table tr[data-destination=platform]")).to_have_class("selected")
    await expect(page.locator("#health a[data-health=dest-platform]")).to_be_visible()  # on every page
    await page.locator("#health a[data-health=dead]").click()
    rows = page.locator("#dlq-table tbody tr[data-dead]")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#dlq-form input[name=since]")).not_to_have_value("")
    await screenshot(page, "console-banner-dlq")


async def test_a_recovered_destination_shows_recovered_at_not_its_old_error(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("LAB1", "ORU^R01")])
    await wait_for(lambda: destination(engine, "lab_system")["recovered_at"] is not None)
    page = await open_console(engine.admin.url, hash="#/overview")
    row = page.locator("section[data-channel=adt] tr[data-destination=lab_system]")
    await expect(row.locator(".light")).to_have_attribute("data-light", "ok")
    await expect(row.locator("[data-note=recovered]")).to_contain_text("recovered at")
    await expect(row).not_to_contain_text("stub failure")
    await page.locator("nav a[data-page=destinations]").click()
    dest = page.locator("#destinations-table tr[data-destination=lab_system]")
    await expect(dest.locator("[data-note=recovered]")).to_contain_text("recovered at")
    await expect(dest).not_to_contain_text("stub failure")
    await screenshot(page, "console-recovered")


async def test_the_message_list_shows_each_destinations_delivery_state(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """A message mapped but stuck on a down destination is not shown as done: its `mapped` pill is
    not green, and each destination says sent, dead or waiting."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("STUCK1"), hl7("LABOK", "ORU^R01")])
    await wait_for(lambda: destination(engine, "platform")["state"] == "down"
                   and destination(engine, "lab_system")["sent"] == 1)
    page = await open_console(engine.admin.url, hash="#/messages")
    stuck = page.locator("#messages-table tr[data-message]").filter(has_text="STUCK1")
    await expect(stuck.locator("[data-destination=archive]")).to_have_attribute("data-delivery", "dead")
    await expect(stuck.locator("[data-destination=platform]")).to_have_attribute("data-delivery", "waiting")
    await expect(stuck.locator("[data-destination=platform]")).to_contain_text("waiting (destination down)")
    await expect(stuck.locator(".badge")).to_have_class(re.compile("pending"))
    done = page.locator("#messages-table tr[data-message]").filter(has_text="LABOK")
    await expect(done.locator("[data-destination=lab_system]")).to_have_attribute("data-delivery", "sent")
    await expect(done.locator(".badge")).not_to_have_class(re.compile("pending"))
    await screenshot(page, "console-messages-deliveries")


async def test_the_dlq_lists_control_id_organisation_and_the_whole_error_and_replays_all_with_progress(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """30 messages refused by a receiver (HTTP 422 with a long reason) are listed with their control
    id and sending organisation and the whole reason, wrapped; once the receiver is fixed, "replay all
    matching" replays them in rounds and shows its progress to the end."""
    reason = ("field PID-3 is not a valid identifier; " * 6 + "END-OF-REASON").encode()
    sink = await S.Sink(default=422, error_body=reason).start()
    try:
        engine = await start_engine(registry_url=sink.url)
        await send_mllp(listen(engine), [hl7(f"ORM{i:02d}", "ORM^O01", facility="NBH002") for i in range(30)])
        await wait_for(lambda: destination(engine, "registry")["dead_letters"] == 30)

        page = await open_console(engine.admin.url, hash="#/dlq?destination=registry")
        rows = page.locator("#dlq-table tbody tr[data-dead]")
        await expect(rows).to_have_count(30)
        row = rows.filter(has_text="ORM07")
        await expect(row.locator("td[data-field=control_id]")).to_have_text("ORM07")
        await expect(row.locator("td[data-field=sending_facility]")).to_have_text("NBH002")
        error = row.locator("td[data-field=error]")
        await expect(error).to_contain_text("END-OF-REASON")
        assert await error.evaluate("td => td.scrollWidth <= td.clientWidth && td.clientHeight > 40")
        await screenshot(page, "console-dlq-columns")

        sink.default = 200
        await page.locator("#dlq-replay-all").click()
        await page.locator("[data-confirm=yes]").click()
        await expect(page.locator("#dlq-progress-text")).to_have_text("Replayed 30 of 30")
        await expect(page.locator("#dlq-progress progress")).to_have_attribute("value", "30")
        await expect(rows).to_have_count(0)
        await wait_for(lambda: len(sink.accepted) == 30)
        await screenshot(page, "console-dlq-replayed")
    finally:
        await sink.stop()


async def test_the_traffic_chart_survives_a_restart_and_switches_between_1h_24h_7d_and_30d(
        start_engine: Callable[..., Any], engine_factory: Callable[[Config], Any], open_console: Any,
        screenshot: Any) -> None:
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7(f"T{i}", "ORU^R01") for i in range(3)])
    await wait_for(lambda: engine.channels["adt"].stats.counts.get("mapped", 0) == 3)
    config = engine.config
    await engine.stop()  # writes the minute in progress to the store

    engine = await engine_factory(config)
    page = await open_console(engine.admin.url, hash="#/overview")
    legend = page.locator("#traffic-legend")
    await expect(legend.locator("[data-total=received]")).to_have_text("Received 3")
    for name in ("24h", "7d", "30d", "1h"):
        await page.locator(f'#traffic-range button[data-range="{name}"]').click()
        await expect(page.locator("#traffic-chart")).to_have_attribute("data-range", name)
        await expect(legend.locator("[data-total=received]")).to_have_text("Received 3")
        if name == "7d":
            await expect(page.locator("#traffic h2")).to_have_text("Messages per hour")
            await screenshot(page, "console-traffic-7d")
    await expect(page.locator("#traffic h2")).to_have_text("Messages per minute")
    received = page.locator("#traffic-chart path[data-series=received]")
    await expect(received).to_have_attribute("data-total", "3")


LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
ALLOWED_IN_ZH = {"yonglink", "CSV"}
"""Latin words a zh label may keep: the product name and a file format."""
LABEL_TEXTS = """() => [...document.querySelectorAll(
  'nav a, h1, h2, h3, th, button, label > span, .badge, .health-label, .legend-item, .dpill-state,'
  + ' td.note span:not(.err-text), select[name=state] option, select[name=kind] option,'
  + ' .store-line > span.muted')]
  .filter((el) => el.offsetParent !== null || el.tagName === 'OPTION').map((el) => el.textContent)"""


async def test_in_chinese_no_english_word_is_left_on_any_page(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """Every label, header, button, pill and banner line of every page in zh; data (names, ids,
    error texts from receivers) is taken out first."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("ZH1"), hl7("ZH2", "ORU^R01")])
    await wait_for(lambda: destination(engine, "platform")["state"] == "down"
                   and destination(engine, "archive")["dead_letters"] == 1)
    status = engine.status()
    data = {d["name"] for d in status["destinations"]} | {c["name"] for c in status["channels"]}
    data |= {"adt_forward", "oru_forward", "orm_forward", "stub", "mllp"}
    data |= {d["last_error"]["text"] for d in status["destinations"] if d["last_error"]}
    page = await open_console(engine.admin.url, locale="zh-CN", hash="#/overview")
    for name in ("overview", "channels", "destinations", "messages", "dlq", "quality"):
        await page.locator(f"nav a[data-page={name}]").click()
        await expect(page.locator("#page")).to_have_attribute("data-page", name)
        await page.wait_for_timeout(300)  # let the page's first fetch render (not an assertion)
        texts = await page.evaluate(LABEL_TEXTS)
        left = []
        for text in texts:
            for value in sorted(data, key=len, reverse=True):
                text = text.replace(value, "")
            left += [w for w in LATIN_WORD.findall(text) if w not in ALLOWED_IN_ZH]
        assert not left, f"English left on the zh {name} page: {sorted(set(left))}"
        await screenshot(page, f"console-zh-{name}")


async def test_the_banner_also_names_a_channel_in_error_a_blocked_destination_and_a_store_nearly_full(
        start_engine: Callable[..., Any], open_console: Any) -> None:
    """The banner's rules on a status a running engine rarely reaches in a test (a channel in error,
    a FIFO head blocking, a store at 95 % of `max_size`), through the console's own function."""
    engine = await start_engine()
    page = await open_console(engine.admin.url, hash="#/overview")
    items = await page.evaluate("""async () => (await import('./console/app.js')).healthItems({
        channels: [{name: 'lab', state: 'error', last_error: {at: 1, text: 'address in use'}},
                   {name: 'adt', state: 'started'}],
        destinations: [{name: 'his', state: 'blocked', blocked_message_id: 'M1', last_error: null},
                       {name: 'ok', state: 'ok'}],
        store: {size_bytes: 950, max_size_bytes: 1000}}, {totals: {dead: 0}})""")
    assert [(i["level"], i["text"], i["href"]) for i in items] == [
        ("warn", "Destination his blocked", "#/messages/M1"),
        ("bad", "Channel lab in error", "#/channels"),
        ("bad", "Store 95% full", "#/overview"),
    ]
    assert items[1]["why"] == "address in use"
    healthy = await page.evaluate("""async () => (await import('./console/app.js')).healthItems({
        channels: [], destinations: [], store: {size_bytes: 800, max_size_bytes: 1000}},
        {totals: {dead: 0}})""")
    assert healthy == []
    await expect(page.locator("#health")).to_have_attribute("data-level", "ok")
    await expect(page.locator("#health")).to_have_text("All channels and destinations are working")
