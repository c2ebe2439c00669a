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
