"""Dead-letter queue through the admin API and the CLI: list, show, replay (single, bulk, remap), purge."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import delivery_support as S
import pytest

from engine import cli
from engine.admin.auth import fingerprint
from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends

TOKEN = "t0ken"
ACTOR = f"admin:{fingerprint(TOKEN)}"
"""How the audit names a caller with the admin token (role and token fingerprint, never the token)."""
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTE = """
id: adt_passthrough
match: {message_type: ADT^A01}
passthrough: true
destinations: [platform]
"""


def config(url: str, *, routes: bool = False) -> str:
    return f"""
engine:
  store: {{path: var/e.db}}
  admin: {{listen: "127.0.0.1:0", token: {TOKEN}}}
destinations:
  - name: platform
    type: http
    retry: {{initial_delay: 0.02, max_attempts: 2}}
    http: {{url: "{url}/r"}}
  - name: archive
    type: http
    retry: {{max_attempts: 1}}
    http: {{url: "{url}/a"}}
""" + ("routes: [pt.yaml]\n" if routes else "")


@pytest.fixture
async def sink() -> Any:
    s = await S.Sink(default=400).start()
    yield s
    await s.stop()


async def api(engine: Engine, method: str, path: str, *, token: bool = True, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as http, http.request(
            method, engine.admin.url + path, json=body, headers=AUTH if token else {}) as resp:
        return resp.status, await resp.json()


async def run_cli(engine: Engine, *argv: str) -> int:
    return await asyncio.to_thread(cli.main, ["dlq", *argv[:1], *argv[1:], "--url", engine.admin.url,
                                              "--token", TOKEN])


def cli_out(text: str) -> str:
    """The CLI's output without the in-process engine's log lines (same stdout in this test)."""
    return "\n".join(line for line in text.splitlines() if not LOG_LINE.match(line))


async def dead_letters(engine: Engine, n: int) -> list[dict[str, Any]]:
    async def listed() -> Any:
        _status, doc = await api(engine, "GET", "/dlq")
        return doc["items"] if len(doc["items"]) == n else None
    return await S.wait_for(listed)  # type: ignore[no-any-return]


async def test_a_rejected_delivery_is_listed_filtered_and_shown_with_its_payload_only_with_the_token(
        sink: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(config(sink.url)))
    [mid] = await S.inject(engine, records=[{"patient_id": "7"}], destinations=("platform",))
    [item] = await dead_letters(engine, 1)
    assert item["message_id"] == mid and item["kind"] == "delivery" and item["destination"] == "platform"
    assert item["attempts"] == 1 and "HTTP 400" in item["error"]
    for query, expected in (("?destination=archive", 0), ("?kind=mapping", 0), ("?error=http%20400", 1),
                            ("?kind=delivery&destination=platform", 1), ("?since=2000-01-01", 1)):
        _, doc = await api(engine, "GET", "/dlq" + query)
        assert len(doc["items"]) == expected, query
    status, _ = await api(engine, "GET", f"/dlq/{item['id']}", token=False)
    assert status == 401
    status, shown = await api(engine, "GET", f"/dlq/{item['id']}")
    assert status == 200 and shown["payload"] == {"patient_id": "7"}


async def test_replay_after_fixing_the_destination_resends_the_stored_payload_with_the_same_key(
        sink: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(config(sink.url)))
    await S.inject(engine, records=[{"patient_id": "7"}], destinations=("platform",))
    [item] = await dead_letters(engine, 1)
    sink.default = 200
    status, doc = await api(engine, "POST", f"/dlq/{item['id']}/replay", body={"remap": False})
    assert status == 200 and doc["requeued"] == 1
    await S.wait_for(lambda: sink.accepted)
    assert sink.accepted[0].key == sink.requests[0].key == item["delivery_id"]
    assert (await api(engine, "GET", "/dlq"))[1]["items"] == []
    audit = await S.rows(engine, "SELECT action, who, dead_letter_id FROM dlq_audit")
    assert audit == [("replay", ACTOR, item["id"])]


async def test_bulk_replay_requeues_only_what_matches_the_filter(
        sink: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(config(sink.url)))
    await S.inject(engine, records=[{"n": i} for i in range(3)], destinations=("platform",))
    await S.inject(engine, records=[{"n": 9}], destinations=("archive",))
    await dead_letters(engine, 4)
    sink.default = 200
    status, doc = await api(engine, "POST", "/dlq/replay", body={"destination": "platform"})
    assert status == 200 and doc == {"requeued": 3, "remapped": 0, "skipped": []}
    await S.wait_for(lambda: len(sink.accepted) == 3)
    [left] = (await api(engine, "GET", "/dlq"))[1]["items"]
    assert left["destination"] == "archive"


async def test_replay_with_remap_maps_the_stored_raw_message_again_with_the_fixed_route(
        sink: Any, tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    (tmp_path / "pt.yaml").write_text(ROUTE, encoding="utf-8")
    sink.default = 200
    engine: Engine = await engine_factory(make_config(config(sink.url, routes=True)))
    raw = b"MSH|^~\\&|LIS|NBH|||20240101||ADT^A01|RM1|P|2.5.1\rPID|1||42^^^^PI\r"
    [mid] = await S.inject(engine, raw=raw, error="adt_person: PID-7 bad date (before the fix)",
                           route_id="adt_person", destinations=())
    [item] = await dead_letters(engine, 1)
    assert item["kind"] == "mapping" and item["message_id"] == mid
    status, doc = await api(engine, "POST", f"/dlq/{item['id']}/replay", body={"remap": True})
    assert status == 200 and doc["remapped"] == 1
    await S.wait_for(lambda: sink.accepted)
    assert sink.accepted[0].body == raw and sink.accepted[0].message_id == mid
    [(state,)] = await S.rows(engine, "SELECT state FROM messages WHERE id = ?", mid)
    assert state == "mapped"


async def test_purge_needs_the_token_and_writes_an_audit_row(
        sink: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(config(sink.url)))
    await S.inject(engine, records=[{"n": 1}], destinations=("archive",))
    [item] = await dead_letters(engine, 1)
    status, _ = await api(engine, "DELETE", f"/dlq/{item['id']}", token=False)
    assert status == 401
    status, doc = await api(engine, "DELETE", f"/dlq/{item['id']}")
    assert status == 200 and doc["by"] == ACTOR
    [(action, who, dead_id, at)] = await S.rows(
        engine, "SELECT action, who, dead_letter_id, at FROM dlq_audit")
    assert (action, who, dead_id) == ("purge", ACTOR, item["id"]) and at > 0
    assert (await api(engine, "GET", f"/dlq/{item['id']}"))[0] == 404


async def test_the_cli_lists_replays_in_bulk_and_purges(
        sink: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    engine: Engine = await engine_factory(make_config(config(sink.url)))
    await S.inject(engine, records=[{"n": 1}, {"n": 2}], destinations=("platform",))
    await S.inject(engine, records=[{"n": 3}], destinations=("archive",))
    items = await dead_letters(engine, 3)
    capsys.readouterr()
    assert await run_cli(engine, "list", "--destination", "platform") == 0
    out = cli_out(capsys.readouterr().out)
    assert "DESTINATION" in out and out.count("platform") == 2 and "archive" not in out
    assert "CONTROL ID" in out and "FACILITY" in out
    assert all((i["control_id"], i["sending_facility"]) == ("C1", "NBH") for i in items)
    assert await run_cli(engine, "list", "--json") == 0
    assert len(json.loads(cli_out(capsys.readouterr().out))["items"]) == 3
    archive = next(i for i in items if i["destination"] == "archive")
    assert await run_cli(engine, "show", archive["id"], "--json") == 0
    assert json.loads(cli_out(capsys.readouterr().out))["payload"] == {"n": 3}
    assert await run_cli(engine, "show", archive["id"]) == 0
    shown = capsys.readouterr().out
    assert f"dead letter {archive['id']}" in shown and "destination  archive" in shown
    assert '"n": 3' in shown and "dead since   20" in shown
    sink.default = 200
    assert await run_cli(engine, "replay", "--all", "--destination", "platform") == 0
    assert "re-queued 2" in capsys.readouterr().out
    await S.wait_for(lambda: len(sink.accepted) == 2)
    assert await run_cli(engine, "purge", archive["id"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert await S.rows(engine, "SELECT action FROM dlq_audit ORDER BY seq") == [
        ("replay",), ("replay",), ("purge",)]
    argv = ["dlq", "list", "--url", engine.admin.url, "--token", "wrong"]
    assert await asyncio.to_thread(cli.main, argv) == 1
