"""Ops can follow one message end to end: received → mapped → every delivery attempt, over the API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from channels.mllp.client import MllpClient
from channels.stub import StubOutbound
from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "tests" / "samples" / "adt_a01_v251_utf8.hl7").read_bytes().replace(b"\r\n", b"\r")

CONFIG = f"""
engine:
  store: {{path: var/path.db}}
  admin: {{listen: "127.0.0.1:0"}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
destinations:
  - name: flaky-person
    type: stub
    routes: ["adt_person"]
    retry: {{initial_delay: 0.05, jitter: 0, max_attempts: 5}}
    stub: {{fail_first: 1}}
  - name: all-records
    type: stub
    routes: ["*"]
routes:
  - {ROOT}/mappings/adt_person.yaml
  - {ROOT}/mappings/adt_inpatient_admission.yaml
"""


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check() if asyncio.iscoroutinefunction(check) else check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_a_retried_delivery_shows_each_attempt_in_the_message_path(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    StubOutbound.received.clear()
    engine: Engine = await engine_factory(make_config(CONFIG))
    port = engine.channels["his"].inbound.describe()["listen"].rsplit(":", 1)[1]  # type: ignore[union-attr]
    async with MllpClient("127.0.0.1", int(port)) as client:
        ack = await client.send(SAMPLE)
    assert b"MSA|CA|" in ack or b"MSA|AA|" in ack

    # subscriptions: the person record goes to both stubs, the admission record only to "*"
    await until(lambda: len(StubOutbound.received.get("flaky-person", [])) == 1)
    await until(lambda: len(StubOutbound.received.get("all-records", [])) == 2)
    assert {i.dataset for i in StubOutbound.received["all-records"]} == {"person", "inpatient_admission"}
    assert [i.dataset for i in StubOutbound.received["flaky-person"]] == ["person"]

    async with aiohttp.ClientSession(engine.admin.url) as http:
        async with http.get("/messages", params={"channel": "his"}) as resp:
            message_id = (await resp.json())["items"][0]["id"]

        async def detail() -> dict[str, Any] | None:
            async with http.get(f"/messages/{message_id}") as resp:
                body: dict[str, Any] = await resp.json()
            flaky = [d for d in body["deliveries"] if d["destination"] == "flaky-person"]
            return body if flaky and flaky[0]["state"] == "sent" else None

        body = await until(detail)
    flaky = next(d for d in body["deliveries"] if d["destination"] == "flaky-person")
    log = flaky["attempt_log"]
    assert [a["result"] for a in log] == ["retry", "sent"]
    assert "stub failure 1 of 1" in log[0]["error"]
    assert log[0]["at"] <= log[1]["at"]
    assert flaky["attempts"] == 2
    assert {r["route_id"] for r in body["results"]} == {"adt_person", "adt_inpatient_admission"}
