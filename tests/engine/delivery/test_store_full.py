"""A full store (at `store.max_size`) does not turn delivery into a hot loop, and is reported.

Story: 200 deliveries are on their way to a destination that holds its answers; meanwhile the store
fills up to its cap; then the destination answers 200 to everything. Every send has succeeded but cannot
be recorded as sent. The worker must back off (not resend the same rows as fast as the CPU allows - 744
log lines/s and 131% CPU were measured), log the failure once per interval, and `/status` and `/readyz`
must say the store is full. When space is freed, the rows are recorded and the state clears.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import delivery_support as S
import pytest
from aiohttp import web

from engine.config import Config
from engine.errors import StoreError
from engine.runtime import Engine

CONFIG = """
engine:
  store: {{path: var/e.db, max_size: 4MiB}}
  admin: {{listen: "127.0.0.1:0"}}
destinations:
  - name: sink
    type: http
    concurrency: 16
    http: {{url: "{url}/r"}}
"""


class GatedSink:
    """Answers 200 to every request, but only once `gate` is set; counts requests."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.requests = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests += 1
        await self.gate.wait()
        return web.json_response({"ok": True})

    async def start(self) -> GatedSink:
        app = web.Application()
        app.router.add_post("/r", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()


async def fill(engine: Engine) -> None:
    """Insert filler rows, halving their size on each refusal, until even 16 bytes do not fit."""
    await engine.store.write(lambda c: c.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)"))
    size = 256 * 1024
    while size >= 16:
        try:
            await engine.store.write(lambda c, n=size: c.execute(
                "INSERT INTO filler VALUES (zeroblob(?))", (n,)))
        except StoreError:
            size //= 2


async def test_a_full_store_makes_delivery_back_off_log_once_and_show_in_status_and_readyz(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    sink = await GatedSink().start()
    try:
        engine: Engine = await engine_factory(make_config(CONFIG.format(url=sink.url)))
        await S.inject(engine, records=[{"patient_id": f"p{i}"} for i in range(200)],
                       destinations=("sink",))
        await S.wait_for(lambda: sink.requests >= 16)  # the first sends are held at the destination
        await fill(engine)
        capsys.readouterr()
        sink.gate.set()
        await asyncio.sleep(3.0)  # every send succeeds now, and none can be recorded
        out = capsys.readouterr()
        lines = len(re.findall("cannot record sent deliveries", out.out + out.err))
        # Without backoff the rows were resent, and the failure logged, as fast as the loop turned.
        # With it: each row about once, then a few backed-off probes.
        assert sink.requests <= 2 * 200, sink.requests
        assert lines <= 2, lines
        status = engine.status()
        assert status["store"]["full"] is True
        (dest,) = status["destinations"]
        assert dest["state"] == "store_full"
        admin = engine.admin.url  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http, http.get(admin + "/readyz") as resp:
            body = await resp.json()
        assert resp.status == 503 and any("store is full" in r for r in body["reasons"])

        # Space comes back: the rows are recorded as sent and the state clears.
        await engine.store.write(lambda c: c.execute("DROP TABLE filler"))
        await S.wait_for(lambda: engine.status()["store"]["full"] is False, timeout=30)
        await S.wait_for(lambda: engine.status()["destinations"][0]["state"] == "ok", timeout=30)
        await S.wait_for(lambda: S.rows(
            engine, "SELECT 1 FROM deliveries WHERE state = 'sent' LIMIT 1"), timeout=30)
    finally:
        await sink.stop()
