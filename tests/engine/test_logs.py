"""Logs are JSON lines off a terminal and keep patient data out at INFO and above."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog

from channels.mllp.client import MllpClient
from engine.config import Config, LogConfig
from engine.logs import REDACTED, configure_logging, is_phi_key, mask_text, redact_phi
from engine.runtime import Engine
from engine.types import InboundMessage

NAME = "张三丰"
ID_NUMBER = "33020319900101123X"
PHONE = "13812345678"
ADDRESS = "浙江省宁波市海曙区中山西路100号"
ADT = ("MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|C900|P|2.5.1|||||CHN|UNICODE UTF-8\r"
       f"PID|1||P001^^^NBH^PI~{ID_NUMBER}^^^CHN^NNCHN||{NAME}^^^^^^L||19900101|M|||{ADDRESS}||{PHONE}\r")
PHI = (NAME, ID_NUMBER, PHONE, "中山西路", "海曙区")

MLLP_CONFIG = """
engine:
  store: {path: var/logs.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: his-adt
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
"""

CONFIG = """
engine:
  store: {path: var/logs.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: lab
    type: mllp
    enabled: false
    mllp: {listen: "127.0.0.1:0"}
"""


@pytest.fixture
def captured() -> Iterator[Callable[[str], io.StringIO]]:
    """Configure logging into a StringIO at a level; restore structlog and the root logger afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def configure(log_level: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(LogConfig(format="json", level=log_level), stream=stream)
        return stream

    yield configure
    structlog.reset_defaults()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def careless_logging(log: Any) -> None:
    """What a hurried developer might write: patient data under keys, in text, in exceptions."""
    log.info("parsed patient", name=NAME, id_number=ID_NUMBER, phone=PHONE, channel="lab",
             message_id="01ABC", control_id="C900")
    log.info(f"mapping failed for {NAME}", raw=ADT.encode())
    log.warning("bad field", error=f"PID-19 {ID_NUMBER} has a bad checksum; call {PHONE}")
    log.error("record rejected", detail={"name": NAME, "address_city": "宁波市", "contacts": [
        {"guardian_name": "李四", "phone": PHONE}], "dataset": "person"})
    try:
        raise ValueError(f"cannot parse segment {ADT.splitlines()[1]}")
    except ValueError:
        log.exception("parse error")
    logging.getLogger("aiohttp.server").error("Error handling request: %s", ADT)


async def test_patient_data_never_reaches_the_log_at_info_while_a_message_is_processed(
        captured: Callable[[str], io.StringIO], make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    """A message with a Chinese name, an 18-digit ID number, a phone and an address goes through the
    engine, and a careless log call of each kind is made: no patient datum appears in the output."""
    stream = captured("info")
    engine: Engine = await engine_factory(make_config(CONFIG))
    rt = engine.channels["lab"]
    acc = await rt.accept(InboundMessage(channel="lab", raw=ADT.encode(), received_at=time.time(),
                                         content_type="x-application/hl7-v2+er7", sending_facility="NBH",
                                         control_id="C900", message_type="ADT^A01", dedupe_key="NBH|C900"))
    await rt.wait_processed(acc.message_id, timeout=5)
    careless_logging(structlog.get_logger("yonglink.test").bind(channel="lab"))
    out = stream.getvalue()
    assert out, "nothing was logged"
    for datum in PHI:
        assert datum not in out
    events = lines(stream)
    assert all("level" in e and "timestamp" in e for e in events)
    first = next(e for e in events if e["event"] == "parsed patient")
    assert first["name"] == REDACTED and first["id_number"] == REDACTED and first["phone"] == REDACTED
    assert (first["channel"], first["message_id"], first["control_id"]) == ("lab", "01ABC", "C900")
    rejected = next(e for e in events if e["event"] == "record rejected")
    assert rejected["detail"]["address_city"] == REDACTED and rejected["detail"]["dataset"] == "person"
    assert rejected["detail"]["contacts"][0]["guardian_name"] == REDACTED
    assert any(e.get("logger") == "aiohttp.server" for e in events)


async def test_mllp_traffic_with_patient_data_leaves_none_in_the_log_or_in_status(
        captured: Callable[[str], io.StringIO], make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    """Over a real MLLP socket: a good message, one in a charset it does not declare, and stray bytes
    outside a frame; the log (at INFO) and `/status` mention none of the patient's data."""
    stream = captured("info")
    engine: Engine = await engine_factory(make_config(MLLP_CONFIG))
    host, port = engine.channels["his-adt"].describe()["listen"].rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        ack = await client.send(ADT.encode())
        assert b"MSA|AA|C900" in ack
        bad = ADT.replace("C900", "C901").encode("gb18030")  # declares UTF-8, is GB 18030
        assert b"MSA|AR|C901" in await client.send(bad)
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"stray {NAME} {ID_NUMBER}".encode() + b"\x0b" + ADT.replace("C900", "C902").encode()
                 + b"\x1c\r")
    await writer.drain()
    await _reader.read(1)
    writer.close()
    async with aiohttp.ClientSession() as s, s.get(engine.admin.url + "/status") as r:
        status = await r.text()
    out = stream.getvalue()
    assert "rejected input" in out
    for datum in PHI:
        assert datum not in out and datum not in status


def test_debug_lines_keep_values_for_a_developer(captured: Callable[[str], io.StringIO]) -> None:
    stream = captured("debug")
    log = structlog.get_logger("yonglink.test")
    log.debug("parsed patient", name=NAME, id_number=ID_NUMBER)
    log.info("parsed patient", name=NAME, id_number=ID_NUMBER)
    debug, info = lines(stream)
    assert (debug["name"], debug["id_number"]) == (NAME, ID_NUMBER)
    assert (info["name"], info["id_number"]) == (REDACTED, REDACTED)


def test_mask_text_masks_shapes_and_keeps_ordinary_words() -> None:
    text = (f"patient {NAME} id {ID_NUMBER} phone +86 138-1234-5678 tel 0574-87654321 mail a.b@c.cn "
            f"lives at {ADDRESS}")
    masked = mask_text(text)
    for datum in (NAME, ID_NUMBER, "138-1234-5678", "87654321", "a.b@c.cn", "中山西路"):
        assert datum not in masked
    assert masked.startswith("patient [redacted] id [redacted] phone")
    assert mask_text("channel his-adt stopped after 3 attempts (HTTP 503)") == \
        "channel his-adt stopped after 3 attempts (HTTP 503)"
    assert mask_text('{"resourceType": "Patient", "name": [{"text": "Li Si"}]}') == REDACTED


def test_person_name_keys_are_phi_but_names_of_things_are_not() -> None:
    assert all(is_phi_key(k) for k in ("name", "Patient_Name", "guardian_name", "address_city", "sfzh"))
    assert not any(is_phi_key(k) for k in ("org_name", "dataset_name", "channel", "control_id"))


def test_identifiers_under_safe_keys_are_never_masked() -> None:
    event = redact_phi(None, "info", {"event": "ack sent", "control_id": "123456789012345678",
                                      "message_type": "ADT^A01", "detail": "123456789012345678"})
    assert event["control_id"] == "123456789012345678" and event["detail"] == REDACTED
