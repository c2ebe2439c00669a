"""HTTP inbound follows the same HL7 v2 rules as MLLP (engine/hl7v2/inbound.py): charsets, rejections.

A real engine with one HTTP channel on 127.0.0.1:0; shapes as in test_http_inbound.py (HL7 v2.5.1 ADT^A01).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from engine.config import Config
from engine.runtime import Engine

ADT = ("MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1|||||CHN|{cs}\r"
       "EVN|A01|20240101120000\rPID|1||123456^^^NBH^MR||张^三||19800101|M\r")
CONFIG = """
engine:
  store: {path: var/e.db}
  admin: {enabled: false}
channels:
  - name: web
    type: http
    http: {listen: "127.0.0.1:0"}
"""


async def start(make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]
                ) -> tuple[Engine, str]:
    engine: Engine = await engine_factory(make_config(CONFIG))
    inbound = engine.channels["web"].inbound
    assert inbound is not None, engine.channels["web"].stats.last_error
    return engine, inbound.describe()["url"].rstrip("/") + "/hl7v2"


async def states(engine: Engine) -> list[tuple[str | None, str]]:
    return await engine.store.read(
        lambda c: c.execute("SELECT control_id, state FROM messages ORDER BY seq").fetchall())


@pytest.mark.parametrize("charset", ["base64", "zlib", "idna", "no-such-charset"])
async def test_a_content_type_charset_that_is_not_a_text_encoding_is_a_415_and_the_body_is_kept(
        charset: str, make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    body = ADT.format(cid="HC-1", cs="").encode()
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": f"text/plain; charset={charset}"}) as resp:
        assert resp.status == 415
        assert charset in await resp.text()
    assert [s for _, s in await states(engine)] == ["rejected"]


@pytest.mark.parametrize("label", ["base64", "idna", "punycode", "undefined"])
async def test_an_msh_18_that_is_not_a_text_encoding_gets_ar_with_the_control_id(
        label: str, make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    body = ADT.format(cid="H18-1", cs=label).encode()
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": "x-application/hl7-v2+er7"}) as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "MSA|AR|H18-1|" in text
    assert await states(engine) == [("H18-1", "rejected")]


async def test_a_message_broken_by_a_stray_cr_gets_ar_not_aa(make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    body = ADT.format(cid="HCR-1", cs="").encode() + b"OBX|1|ST|Test\rString||20090505||||||F\r"
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": "x-application/hl7-v2+er7"}) as resp:
        text = await resp.text()
    assert "MSA|AR|HCR-1|" in text
    assert await states(engine) == [("HCR-1", "rejected")]


async def test_an_ar_for_an_empty_msh_9_echoes_the_control_id_and_the_row_keeps_it(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    body = b"MSH|^~\\&|HIS|NBH|EMPI|NB|20240101120000|||H9-1|T|2.4\rPID|1\r"
    async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": "x-application/hl7-v2+er7"}) as resp:
        text = await resp.text()
    assert "MSA|AR|H9-1|" in text and text.startswith("MSH|^~\\&|EMPI|NB|HIS|NBH|")
    assert "|ACK|" in text and "|T|2.4" in text
    assert await states(engine) == [("H9-1", "rejected")]


async def test_a_reused_control_id_with_another_body_is_a_new_message_over_http_too(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    first = ADT.format(cid="HR-1", cs="").encode()
    other = first.replace("张^三".encode(), "李^四".encode())
    async with aiohttp.ClientSession() as http:
        for body in (first, other, other):
            async with http.post(url, data=body, headers={"Content-Type": "x-application/hl7-v2+er7"}) as r:
                assert "MSA|AA|HR-1|" in await r.text()
    assert [cid for cid, _ in await states(engine)] == ["HR-1", "HR-1"]
    counts = engine.channels["web"].stats.counts
    assert (counts["control_id_reused"], counts["duplicate"]) == (1, 1)
