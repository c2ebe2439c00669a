"""Hostile HTTP peers are bounded: a connection cap, header and body timeouts, raw bytes in credentials.

Raw sockets on 127.0.0.1 against a real engine, because aiohttp's client will not send half a request
or non-UTF-8 header bytes. A well-behaved MLLP sender (`NormalSender`, tests/support/hostile_support.py)
runs next to the half-sent requests and must get every AA with p99 under 100 ms (loose bound).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from hostile_support import NormalSender, adt, closed_by_server

from engine.config import Config
from engine.runtime import Engine

MakeConfig = Callable[[str], Config]
Factory = Callable[[Config], Any]

CONFIG = """
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
channels:
  - name: web
    type: http
    http: {{listen: "127.0.0.1:0", max_body_bytes: 64KiB{http}}}
  - name: lab
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
"""


async def start(make_config: MakeConfig, engine_factory: Factory, http: str = "") -> tuple[Engine, int, int]:
    """Engine, HTTP port, MLLP port."""
    engine: Engine = await engine_factory(make_config(CONFIG.format(http=http)))
    web, lab = engine.channels["web"].inbound, engine.channels["lab"].inbound
    assert web is not None and lab is not None, engine.channels["web"].stats.last_error
    return (engine, int(web.describe()["listen"].rsplit(":", 1)[1]),
            int(lab.describe()["listen"].rsplit(":", 1)[1]))


async def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    try:
        return await asyncio.wait_for(reader.read(65536), 5.0)
    finally:
        writer.close()


def hl7_post(length: int, *extra: bytes) -> bytes:
    return (b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\n"
            + b"".join(extra) + b"Content-Length: %d\r\n\r\n" % length)


async def stored_count(engine: Engine) -> int:
    return int(await engine.store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0]))


@pytest.mark.parametrize("credential", [b"Authorization: Bearer \xff\xfe\x80token\r\n",
                                        b"X-API-Key: \xc3\x28\xa0\r\n"], ids=["bearer", "api-key"])
async def test_raw_non_utf8_bytes_in_credentials_get_401_not_500(
        make_config: MakeConfig, engine_factory: Factory, monkeypatch: pytest.MonkeyPatch,
        credential: bytes) -> None:
    monkeypatch.setenv("YL_TEST_TOKEN", "secret-token")
    monkeypatch.setenv("YL_TEST_KEY", "secret-key")
    engine, port, _ = await start(make_config, engine_factory,
                                  ", auth: {bearer_token_env: YL_TEST_TOKEN, api_key_env: YL_TEST_KEY}")
    body = adt("RAW-1")
    reply = await raw_request(port, hl7_post(len(body), credential), body)
    assert reply.startswith(b"HTTP/1.1 401 "), reply[:60]
    assert await stored_count(engine) == 0


async def test_connections_beyond_max_connections_get_503_and_one_log_line(
        make_config: MakeConfig, engine_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    engine, port, mllp = await start(make_config, engine_factory, ", max_connections: 50")
    async with NormalSender(mllp) as normal:
        capsys.readouterr()
        half = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        try:
            for _, w in half:  # half-sent requests hold their connections
                w.write(b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\n")
            extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
            replies = [await asyncio.wait_for(r.read(), 5.0) for r, _ in extra]
            for _, w in extra:
                w.close()
            assert all(r.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 5" in r for r in replies)
            out = capsys.readouterr()
            assert len(re.findall("connection refused: max_connections reached", out.out + out.err)) == 1
            assert engine.channels["web"].inbound.describe()["connections_refused"] == 30  # type: ignore[union-attr]
        finally:
            for _, w in half:
                w.close()
        await asyncio.sleep(0.2)  # the server sees the half-sent ones go
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{port}/hl7v2", data=adt("AFTER-1"),
                headers={"Content-Type": "x-application/hl7-v2+er7"}) as resp:
            assert resp.status == 200 and b"MSA|AA|AFTER-1" in await resp.read()
    assert set(normal.msa1) == {"AA"} and normal.p99() < 0.100


async def test_a_request_whose_headers_never_complete_is_closed_by_the_header_timeout(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port, _ = await start(make_config, engine_factory, ", header_timeout: 500ms")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
    try:
        assert await closed_by_server(reader, within=5.0)
    finally:
        writer.close()


async def test_a_body_that_stalls_gets_408_after_the_body_timeout_and_nothing_is_stored(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port, _ = await start(make_config, engine_factory, ", body_timeout: 500ms")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = adt("STALL-1")
    writer.write(hl7_post(len(body)) + body[:20])  # the rest never comes
    try:
        reply = await asyncio.wait_for(reader.read(65536), 5.0)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert await stored_count(engine) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_max_body_bytes_gets_413_and_nothing_is_stored(
        make_config: MakeConfig, engine_factory: Factory, chunked: bool) -> None:
    engine, port, mllp = await start(make_config, engine_factory)
    big = adt("BIG-1", body="NTE|1||" + "x" * 200_000 + "\r")
    async with NormalSender(mllp) as normal, aiohttp.ClientSession() as http:
        async def chunks() -> Any:
            for at in range(0, len(big), 8192):
                yield big[at:at + 8192]

        data: Any = chunks() if chunked else big
        async with http.post(f"http://127.0.0.1:{port}/hl7v2", data=data,
                             headers={"Content-Type": "x-application/hl7-v2+er7"}) as resp:
            assert resp.status == 413
    assert await stored_count(engine) == len(normal.latencies)  # only the normal sender's messages
    assert set(normal.msa1) == {"AA"} and normal.p99() < 0.100
