"""The ops console in headless Chromium against a running engine (admin API and MLLP on loopback).

Every test starts the real engine in-process, opens the console served by its admin API and does what
an operator would: watch counters move, press buttons, replay a dead letter. Screenshots are saved
under test-artifacts/ for a human to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from console_support import hl7, send_mllp, wait_for
from playwright.async_api import expect
from yarl import URL

from engine.config import Config
from engine.runtime import Engine
from engine.types import ChannelState

pytestmark = pytest.mark.browser

TOKEN = "console-test-token"

CONFIG = """\
engine:
  store:
    path: var/console.db
  admin:
    listen: 127.0.0.1:0
{token}channels:
  - name: adt
    type: mllp
    mllp:
      listen: 127.0.0.1:0
destinations:
  - name: console_sink
    type: stub
    retry:
      max_attempts: 1
    stub:
      fail_first: 1
  - name: fifo_sink
    type: stub
    ordering: fifo
    retry:
      max_attempts: 10
      initial_delay: 60s
    stub:
      fail_first: 100
routes:
  - routes/*.yaml
  - {person_route}
"""

ROUTE = """\
# Every ADT^A01 is forwarded as received to the stub destination (its first send fails: a dead letter).
id: pass_adt
match:
  message_type: ADT^A01
passthrough: true
destinations: [console_sink]
"""
FIFO_ROUTE = """\
# ORM^O01 goes to a strict-FIFO destination that keeps failing: its head blocks the queue.
id: pass_orm
match:
  message_type: ORM^O01
passthrough: true
destinations: [fifo_sink]
"""
PERSON_ROUTE = Path(__file__).resolve().parents[2] / "mappings" / "adt_person.yaml"
"""The shipped ADT → person route, so the data-quality page has a dataset to show."""


@pytest.fixture
def start_engine(tmp_path: Path, make_config: Callable[[str], Config],
                 engine_factory: Callable[[Config], Any]) -> Callable[..., Any]:
    async def start(*, token: str | None = None, loopback_raw: bool = False) -> Engine:
        (tmp_path / "routes").mkdir(exist_ok=True)
        (tmp_path / "routes" / "pass_adt.yaml").write_text(ROUTE, encoding="utf-8")
        (tmp_path / "routes" / "pass_orm.yaml").write_text(FIFO_ROUTE, encoding="utf-8")
        token_line = f"    token: {token}\n" if token else ""
        if loopback_raw:  # the admin role for loopback clients without a token (engine/admin/auth.py)
            token_line += "    loopback_raw: true\n"
        text = CONFIG.format(token=token_line, person_route=PERSON_ROUTE)
        engine: Engine = await engine_factory(make_config(text))
        return engine

    return start


def listen(engine: Engine) -> str:
    inbound = engine.channels["adt"].inbound
    assert inbound is not None
    return str(inbound.describe()["listen"])


def sink(engine: Engine) -> dict[str, Any]:
    return next(d for d in engine.delivery.status() if d["name"] == "console_sink")


async def test_the_channel_received_count_goes_up_after_messages_arrive(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """The Channels page shows the MLLP channel and its received count follows new messages live."""
    engine = await start_engine()
    page = await open_console(engine.admin.url)
    row = page.locator("tr[data-channel=adt]")
    await expect(row.locator("td[data-counter=received]")).to_have_text("0")
    await expect(row.locator(".badge")).to_have_text("started")
    await expect(row).to_contain_text(listen(engine))

    acks = await send_mllp(listen(engine), [hl7(f"C{i}") for i in range(5)])
    assert all(b"MSA|AA" in a for a in acks)

    await expect(row.locator("td[data-counter=received]")).to_have_text("5")
    await expect(row.locator("td[data-counter=mapped]")).to_have_text("5")
    await expect(row.locator("svg.spark")).to_have_count(1)
    await expect(page.locator("#config-version")).to_have_text(engine.config.version)
    await screenshot(page, "console-channels")


async def test_stop_and_start_buttons_control_the_channel(
        start_engine: Callable[..., Any], open_console: Any) -> None:
    """Stop closes the listener (state `stopped`, connections refused); Start opens it again."""
    engine = await start_engine()
    address = listen(engine)
    page = await open_console(engine.admin.url)
    row = page.locator("tr[data-channel=adt]")
    await expect(row.locator("button[data-action=resume]")).to_be_disabled()

    await row.locator("button[data-action=stop]").click()
    await expect(page.locator("tr[data-channel=adt]")).to_have_attribute("data-state", "stopped")
    assert engine.channels["adt"].state is ChannelState.STOPPED
    with pytest.raises(OSError):
        await send_mllp(address, [hl7("WHILE-STOPPED")])
    await expect(page.locator("tr[data-channel=adt] button[data-action=stop]")).to_be_disabled()

    await page.locator("tr[data-channel=adt] button[data-action=start]").click()
    await expect(page.locator("tr[data-channel=adt]")).to_have_attribute("data-state", "started")
    assert engine.channels["adt"].state is ChannelState.STARTED
    acks = await send_mllp(listen(engine), [hl7("AFTER-START")])
    assert b"MSA|AA" in acks[0]
    await expect(page.locator("tr[data-channel=adt] td[data-counter=received]")).to_have_text("1")


async def test_a_dead_letter_is_replayed_from_the_dlq_page_and_delivered(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """The first send to the stub fails with max_attempts 1 (a dead letter); selecting it and pressing
    Replay re-sends the stored payload, which the destination now accepts."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("DLQ1")])
    await wait_for(lambda: sink(engine)["dead_letters"] == 1)
    assert sink(engine)["sent"] == 0

    page = await open_console(engine.admin.url, hash="#/dlq")
    rows = page.locator("#dlq-table tbody tr[data-dead]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("stub failure 1 of 1")
    await expect(page.locator("#dlq-replay")).to_be_disabled()
    await screenshot(page, "console-dlq")
    await rows.first.locator("input.pick").check()
    await expect(page.locator("#dlq-count")).to_have_text("1 selected")
    await page.locator("#dlq-replay").click()

    await expect(page.locator("#toast")).to_contain_text("Requeued 1")
    await expect(rows).to_have_count(0)
    await wait_for(lambda: sink(engine)["sent"] == 1)
    await page.locator("nav a[data-page=destinations]").click()
    dest = page.locator("tr[data-destination=console_sink]")
    await expect(dest.locator("td[data-counter=sent]")).to_have_text("1")
    await expect(dest.locator("td[data-counter=dead]")).to_have_text("0")
    await expect(page.locator("#queue-chart svg")).to_have_count(1)
    await screenshot(page, "console-destinations")


async def test_purge_asks_for_confirmation_first(start_engine: Callable[..., Any], open_console: Any) -> None:
    """Purge shows an in-page confirmation; Cancel keeps the dead letter, Confirm removes it. (Purging needs
    the admin role: here, a loopback console with `loopback_raw`.)"""
    engine = await start_engine(loopback_raw=True)
    await send_mllp(listen(engine), [hl7("PURGE1")])
    await wait_for(lambda: sink(engine)["dead_letters"] == 1)
    page = await open_console(engine.admin.url, hash="#/dlq")
    rows = page.locator("#dlq-table tbody tr[data-dead]")
    await rows.first.locator("input.pick").check()

    await page.locator("#dlq-purge").click()
    await page.get_by_role("button", name="Cancel").click()
    await expect(rows).to_have_count(1)
    await rows.first.locator("input.pick").check()
    await page.locator("#dlq-purge").click()
    await page.locator("[data-confirm=yes]").click()
    await expect(rows).to_have_count(0)
    await wait_for(lambda: sink(engine)["dead_letters"] == 0)


async def test_a_message_is_found_by_control_id_and_its_path_shown(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """Searching a control id finds the message; its detail shows received → mapped with the route."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("FIND-ME"), hl7("OTHER")])
    await wait_for(lambda: engine.channels["adt"].stats.counts["mapped"] == 2)
    page = await open_console(engine.admin.url, hash="#/messages")
    await page.locator("input[name=control_id]").fill("FIND-ME")
    await page.locator("#messages-form button[type=submit]").click()
    rows = page.locator("#messages-table tbody tr[data-message]")
    await expect(rows).to_have_count(1)
    await rows.first.click()

    path = page.locator("#message-path")
    await expect(path).to_contain_text("received · adt")
    await expect(path).to_contain_text("MSH-10 FIND-ME")
    await expect(path.locator(".step-mapped")).to_contain_text("pass_adt")
    await expect(path.locator(".step-mapped")).to_contain_text("adt_person → person")
    await screenshot(page, "console-message")

    await page.locator("nav a[data-page=quality]").click()
    row = page.locator("#quality-table tr[data-org=NBH001][data-dataset=person]")
    await expect(row.locator("td").nth(2)).to_have_text("2")
    await screenshot(page, "console-quality")


async def test_a_blocked_fifo_destination_shows_the_message_holding_it_up(
        start_engine: Callable[..., Any], open_console: Any) -> None:
    """A strict-FIFO destination whose head keeps failing shows its blocking message id, which links
    to that message's detail."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("HEAD", "ORM^O01")])
    head = await wait_for(lambda: next(d for d in engine.delivery.status()
                                       if d["name"] == "fifo_sink")["blocked_message_id"])
    page = await open_console(engine.admin.url, hash="#/destinations")
    row = page.locator("tr[data-destination=fifo_sink]")
    await expect(row.locator("a[data-blocked]")).to_have_text(head)
    await expect(row.locator("td[data-counter=queued]")).to_have_text("1")
    await expect(row).to_contain_text("stub failure 1 of 100")
    await row.locator("a[data-blocked]").click()
    await expect(page.locator("#message-path")).to_contain_text("MSH-10 HEAD")


async def test_with_a_token_the_console_asks_for_it_and_keeps_it_for_the_session(
        start_engine: Callable[..., Any], open_console: Any) -> None:
    """With engine.admin.token set, the console shows nothing but the token prompt; once the token is
    entered (kept in sessionStorage) channels, buttons and the raw message appear."""
    engine = await start_engine(token=TOKEN)
    await send_mllp(listen(engine), [hl7("SECRET1")])
    page = await open_console(engine.admin.url)
    await expect(page.locator("#banner")).to_contain_text("requires the admin token")
    await expect(page.locator("tr[data-channel=adt]")).to_have_count(0)
    await expect(page.locator("#reload-btn")).to_be_disabled()

    await page.locator("#token-input").fill("wrong")
    await page.locator("#token-submit").click()
    await expect(page.locator("#toast")).to_contain_text("rejected")
    await page.locator("#token-input").fill(TOKEN)
    await page.locator("#token-submit").click()

    row = page.locator("tr[data-channel=adt]")
    await expect(row.locator("button[data-action=stop]")).to_be_enabled()
    assert await page.evaluate("sessionStorage.getItem('yonglink.token')") == TOKEN
    assert await page.evaluate("localStorage.getItem('yonglink.token')") is None
    message_id = (await engine.store.read(lambda c: c.execute("SELECT id FROM messages").fetchone()))[0]
    await page.goto(f"{engine.admin.url}/#/messages/{message_id}")
    await expect(page.locator("#message-raw")).to_contain_text("MSH|^~\\&|HIS|NBH001")
    await page.locator("#token-clear").click()
    await expect(page.locator("#banner")).to_contain_text("requires the admin token")


async def test_the_language_follows_the_browser_and_can_be_switched(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """A zh-CN browser gets Chinese labels; the switch turns them to English and back."""
    engine = await start_engine()
    page = await open_console(engine.admin.url, locale="zh-CN")
    await expect(page.locator("nav a[data-page=channels]")).to_have_text("通道")
    await expect(page.locator("tr[data-channel=adt] .badge")).to_have_text("运行中")
    await screenshot(page, "console-channels-zh")
    await page.locator("#lang-select").select_option("en")
    await expect(page.locator("nav a[data-page=channels]")).to_have_text("Channels")
    await expect(page.locator("tr[data-channel=adt] button[data-action=stop]")).to_have_text("Stop")


async def test_the_reload_button_applies_the_edited_config_and_shows_its_version(
        start_engine: Callable[..., Any], open_console: Any, tmp_path: Path) -> None:
    """Editing config.yaml and pressing Reload shows the new config version in the header; a broken
    file is refused with its file:line in the message and the version stays."""
    engine = await start_engine()
    page = await open_console(engine.admin.url)
    old = engine.config.version
    await expect(page.locator("#config-version")).to_have_text(old)
    file = tmp_path / "config.yaml"
    file.write_text(file.read_text(encoding="utf-8") + "# edited by the operator\n", encoding="utf-8")

    await page.locator("#reload-btn").click()
    await expect(page.locator("#toast")).to_contain_text("Config reloaded")
    await expect(page.locator("#config-version")).not_to_have_text(old)
    new = engine.config.version

    file.write_text(file.read_text(encoding="utf-8").replace("    mllp:\n", "    mlp:\n"), encoding="utf-8")
    await page.locator("#reload-btn").click()
    await expect(page.locator("#toast")).to_contain_text("config.yaml:")
    await expect(page.locator("#config-version")).to_have_text(new)
    await expect(page.locator("#reload-refused")).to_be_visible()


async def test_the_console_files_are_served_without_the_token_and_history_is_not(
        start_engine: Callable[..., Any]) -> None:
    """`/` and `/console/...` are public (no data in them); `/history` needs the token like `/status`;
    paths escaping the static folder are 404."""
    engine = await start_engine(token=TOKEN)
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/console/app.js", "/console/app.css", "/console/info.json"):
            async with http.get(engine.admin.url + path) as resp:
                assert resp.status == 200, path
        async with http.get(engine.admin.url + "/console/info.json") as resp:
            assert (await resp.json()) == {"token_required": True}
        async with http.get(engine.admin.url + "/history") as resp:
            assert resp.status == 401
        async with http.get(engine.admin.url + "/history",
                            headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
            body = await resp.json()
            assert "adt" in body["channels"]["messages_per_second"]
        for path in ("/console/../console.py", "/console/%2e%2e/reload.py", "/console/nope.js"):
            async with http.get(URL(engine.admin.url + path, encoded=True)) as resp:
                assert resp.status == 404, path


async def test_the_quality_page_shows_the_monthly_bulletin_for_the_picked_month(
        start_engine: Callable[..., Any], open_console: Any, screenshot: Any) -> None:
    """The month picker loads that month's bulletin from the store: this month ranks NBH001 with its two
    messages; last month has no rows; the printable bulletin is the Chinese HTML of the same month."""
    engine = await start_engine()
    await send_mllp(listen(engine), [hl7("Q1"), hl7("Q2")])
    await wait_for(lambda: engine.channels["adt"].stats.counts["mapped"] == 2)
    page = await open_console(engine.admin.url, hash="#/quality", locale="zh-CN")
    row = page.locator("#monthly-table tr[data-org=NBH001]")
    await expect(row.locator("td").nth(0)).to_have_text("1")
    await expect(row.locator("td").nth(4)).to_have_text("2")
    await screenshot(page, "console-quality-monthly")
    month = await page.locator("#q-month").input_value()
    year, mon = int(month[:4]), int(month[5:])
    before = f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"
    await page.locator("#q-month").fill(before)
    await page.locator("#q-month").dispatch_event("change")
    await expect(page.locator("#monthly-table td.empty")).to_have_count(1)
    href = await page.locator("#q-print").get_attribute("href")
    assert href is not None and f"month={before}" in href and "format=html" in href
    async with aiohttp.ClientSession() as http, \
            http.get(f"{engine.admin.url}/quality/monthly?month={month}&format=html") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "数据质量月度通报" in text and "NBH001" in text and "DOE" not in text
