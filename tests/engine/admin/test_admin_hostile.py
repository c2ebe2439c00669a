"""The admin API answers credentials it cannot decode with 401, like any other wrong token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.config import Config
from engine.runtime import Engine

CONFIG = """
engine:
  store: {path: var/admin.db}
  admin: {listen: "127.0.0.1:0", token: s3cret-admin-token}
channels:
  - name: lab
    type: mllp
    enabled: false
    mllp: {listen: "127.0.0.1:0"}
"""


async def test_raw_non_utf8_bytes_in_the_admin_bearer_token_get_401_not_500(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    host, port = engine.admin.url.removeprefix("http://").rsplit(":", 1)  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \xff\xfe\x80\r\n"
                 b"Connection: close\r\n\r\n")
    try:
        reply = await asyncio.wait_for(reader.read(65536), 5.0)
    finally:
        writer.close()
    assert reply.startswith(b"HTTP/1.1 401 "), reply[:60]


LIMITED = """
engine:
  store: {path: var/admin.db}
  admin: {listen: "127.0.0.1:0", token: s3cret-admin-token, max_connections: 3, header_timeout: 0.3s}
channels:
  - name: lab
    type: mllp
    enabled: false
    mllp: {listen: "127.0.0.1:0"}
"""


async def test_admin_connections_beyond_the_cap_get_503_and_the_api_stays_up(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    patient = LIMITED.replace("header_timeout: 0.3s", "header_timeout: 30s")
    engine: Engine = await engine_factory(make_config(patient))
    host, port = engine.admin.url.removeprefix("http://").rsplit(":", 1)  # type: ignore[union-attr]
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(3)]
    await asyncio.sleep(0.1)  # the server has accepted all three
    reader, writer = await asyncio.open_connection(host, int(port))
    refused = await asyncio.wait_for(reader.read(65536), 5.0)
    writer.close()
    assert refused.startswith(b"HTTP/1.1 503 "), refused[:60]
    for _, w in idle:
        w.close()
        await w.wait_closed()
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(65536), 5.0)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:60]


async def test_an_admin_peer_that_never_finishes_its_headers_is_disconnected(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(LIMITED))
    host, port = engine.admin.url.removeprefix("http://").rsplit(":", 1)  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # slowloris: never the blank line
    try:
        rest = await asyncio.wait_for(reader.read(65536), 5.0)  # aiohttp's default would wait 75 s
    finally:
        writer.close()
    assert not rest.startswith(b"HTTP/1.1 200"), rest[:60]
    assert reader.at_eof()
