"""The fast MSH reader and ACK writer (every inbound channel's hot path) agree with the full parser and
`build_ack`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from engine.errors import Hl7ParseError
from engine.hl7v2.ack import AckWriter, build_ack, needs_ack, wants_ack
from engine.hl7v2.charset import decode, python_codec, sniff_charset
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.header import read_header

SAMPLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "samples").glob("*.hl7")
                 if not p.name.startswith("batch"))


def load(path: Path) -> tuple[str, bytes, str]:
    raw = path.read_bytes()
    label = sniff_charset(raw)
    return decode(raw, label), raw, python_codec(label) if label else "utf-8"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_fast_header_reads_what_the_full_parser_reads(path: Path) -> None:
    text, raw, codec = load(path)
    hdr, msg = read_header(text, raw, codec), Er7Message.parse(text)
    assert hdr.control_id == msg.control_id
    assert hdr.first(3) == msg.sending_application and hdr.first(4) == msg.sending_facility
    assert hdr.message_type == msg.message_type
    assert hdr.accept_ack_type == msg.accept_ack_type.upper()


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("code", ["AA", "CA"])
def test_a_positive_ack_is_byte_identical_to_build_ack(path: Path, code: str) -> None:
    text, raw, codec = load(path)
    writer = AckWriter("T-")
    fast = writer.positive(read_header(text, raw, codec), code, "ok")
    stamp = fast.split("|")[6]
    slow = build_ack(Er7Message.parse(text), code, "ok", control_id="T-1",
                     now=datetime.strptime(stamp, "%Y%m%d%H%M%S"))
    assert fast == slow


@pytest.mark.parametrize("payload", [
    "PID|1\r", "MSH|^~\\&|A\r", "MSH|^^\\&|HIS|NBH|||20240101||ADT^A01|B1|P|2.5.1\r",
    "MSH|^~\\&|HIS|NBH|||20240101||ADT^A01|B1|P|2.5.1\rPID|1|\x01\r",
    "MSH|^~\\&|HIS|NBH|||20240101|||B1|P|2.5.1\r",
])
def test_the_fast_header_rejects_what_the_full_parser_rejects_with_the_same_reason(payload: str) -> None:
    with pytest.raises(Hl7ParseError) as slow:
        Er7Message.parse(payload)
    with pytest.raises(Hl7ParseError) as fast:
        read_header(payload, payload.encode(), "utf-8")
    assert fast.value.reason == slow.value.reason


@pytest.mark.parametrize("mode", ["", "AL", "NE", "ER", "SU", "XX"])
@pytest.mark.parametrize("code", ["AA", "CA", "AE", "AR", "CE", "CR"])
def test_wants_ack_follows_table_0155_like_needs_ack(mode: str, code: str) -> None:
    text = f"MSH|^~\\&|HIS|NBH|||20240101||ADT^A01|B1|P|2.5.1|||{mode}\r"
    assert wants_ack(mode, code) == needs_ack(Er7Message.parse(text), code)


def test_a_negative_ack_stays_under_its_bound_with_long_header_fields_and_chinese_errors() -> None:
    """Issue #16: ACKs up to 8.1 KB made a sender that reads 4 KB pair later messages with the wrong ACK."""
    from engine.hl7v2.ack import MAX_ACK_BYTES, MSA3_MAX

    raw = ("MSH|^~\\&|" + "A" * 300 + "|" + "B" * 300 + "|C|D|2024||ADT^" + "E" * 300 + "|" + "X" * 300
           + "|P|2.5.1\rPID|1\r").encode()
    hdr = read_header(raw.decode(), raw, "utf-8")
    ack = build_ack(hdr, "AE", "错误 " * 100, errors=["错误 " * 150] * 12, control_id="1", error_code="207")
    lines = [line.split("|") for line in ack.split("\r") if line]
    errs = [f for f in lines if f[0] == "ERR"]
    assert len(ack.encode("utf-8")) <= MAX_ACK_BYTES and len(ack.encode("gb18030")) <= MAX_ACK_BYTES
    assert len(lines[1][3]) <= MSA3_MAX
    kept = len(errs) - 1
    assert errs[-1][8] == f"and {12 - kept} more errors" and kept >= 1
