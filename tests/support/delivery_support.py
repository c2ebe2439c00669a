"""Helpers for the delivery tests: put routed messages straight into the outcome transaction, a real
aiohttp sink on loopback, and polling with a deadline (no sleeps as assertions).

Loaded by path (`tests` is not a package under --import-mode=importlib): see `load()` at the top of
each delivery test module.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine.runtime import Engine
from engine.store import messages
from engine.types import HL7V2, InboundMessage, MessageState, RouteResult


async def inject(engine: Engine, *, records: list[dict[str, Any]] | None = None,
                 destinations: tuple[str, ...],
                 dataset: str = "person", route_id: str = "test_route", raw: bytes | None = None,
                 passthrough: bool = False, error: str | None = None, channel: str = "lab") -> list[str]:
    """Commit messages with their routed results exactly as the pipeline would; returns message ids."""
    now = time.time()
    items: list[tuple[bytes, RouteResult]] = []
    if error is not None or passthrough:
        body = raw or b"MSH|^~\\&|LIS|NBH|||20240101||ADT^A01|C1|P|2.5.1\rPID|1||42^^^^PI\r"
        items.append((body, RouteResult(route_id=route_id, error=error, passthrough=passthrough,
                                        destinations=() if error else destinations)))
    for rec in records or []:
        items.append((raw or b"MSH|^~\\&|LIS|NBH|||20240101||ADT^A01|C1|P|2.5.1\r",
                      RouteResult(route_id=route_id, dataset=dataset, record=rec, destinations=destinations)))

    def op(conn: sqlite3.Connection) -> tuple[list[str], set[str]]:
        ids, wake = [], set()
        for body, result in items:
            msh = body.split(b"\r", 1)[0].decode(errors="replace").split("|")
            acc = messages.insert(conn, InboundMessage(channel=channel, raw=body, content_type=HL7V2,
                                                       received_at=now, sending_facility=msh[3] or None,
                                                       control_id=msh[9] or None), dedupe_window=0)
            stored = messages.get(conn, acc.message_id)
            state = MessageState.FAILED if result.error else MessageState.MAPPED
            messages.record_outcome(conn, acc.message_id, state, result.error, [result], now=now)
            wake |= engine.delivery.record(conn, stored, [result], now)  # type: ignore[arg-type]
            ids.append(acc.message_id)
        return ids, wake

    ids, wake = await engine.store.write(op)
    engine.delivery.wake(wake)
    return ids


async def wait_for(cond: Callable[[], Any], timeout: float = 20.0,  # noqa: ASYNC109 - a polling deadline
                   interval: float = 0.02) -> Any:
    """Poll `cond` (sync or async) until truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def rows(engine: Engine, sql: str, *args: Any) -> Any:
    """Run a read query on the engine's store (awaitable)."""
    return engine.store.read(lambda c: c.execute(sql, args).fetchall())


@dataclass
class Request:
    at: float
    key: str
    message_id: str
    body: bytes
    status: int
    delivery_ids: tuple[str, ...] = ()
    """`X-Delivery-Ids` of a batch request (empty for one record per request)."""


@dataclass
class Sink:
    """An HTTP receiver: answers `script` statuses in order (then `default`), records every request."""

    script: list[int] = field(default_factory=list)
    default: int = 200
    retry_after: str | None = None
    body: bytes = b'{"ok": true}'
    error_body: bytes = b"rejected: field x is bad"
    """What a failure status answers (a receiver may echo the record back in it)."""
    delay: float = 0.0
    fail_ids: set[str] = field(default_factory=set)
    fail_body: dict[bytes, int] = field(default_factory=dict)
    """Answer 503 to a request whose body contains the key, as many times as the value (-1: always)."""
    refuse_body: set[bytes] = field(default_factory=set)
    """Answer 400 to every request whose body contains one of these."""
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.script.pop(0) if self.script else self.default
        if request.headers.get("X-Message-Id") in self.fail_ids:
            status = 503
        for needle, left in self.fail_body.items():
            if needle in payload and left != 0:
                self.fail_body[needle] = left - 1
                status = 503
        if any(needle in payload for needle in self.refuse_body):
            status = 400
        ids = request.headers.get("X-Delivery-Ids")
        self.requests.append(Request(at=time.monotonic(), key=request.headers.get("Idempotency-Key", ""),
                                     message_id=request.headers.get("X-Message-Id", ""), body=payload,
                                     status=status, delivery_ids=tuple(ids.split(",")) if ids else ()))
        headers = {"Retry-After": self.retry_after} if self.retry_after and status in (429, 503) else {}
        return web.Response(status=status, body=self.body if status < 300 else self.error_body,
                            headers=headers, content_type="application/json")

    @property
    def accepted(self) -> list[Request]:
        return [r for r in self.requests if r.status < 300]

    async def start(self) -> Sink:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
