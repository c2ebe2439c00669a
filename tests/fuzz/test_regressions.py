"""Crashes and broken invariants the property tests found, each kept as a plain test (issue #16)."""

from __future__ import annotations

import pytest

from channels.payload import Envelope, hl7v2_items
from engine.errors import Hl7ParseError
from engine.hl7v2.ack import build_ack, parse_ack
from engine.hl7v2.er7 import Er7Message

ADT = b"MSH|^~\\&|HIS|NBH|EMPI|NB|20240301101523||ADT^A01^ADT_A01|C1|P|2.5.1\rPID|1\r"


def test_a_payload_starting_with_a_nul_gets_an_ar_whose_text_is_readable() -> None:
    """Found by test_fuzz_er7: the reason quoted the first three characters raw ("\\x00MS"), so the HTTP
    AR carried a NUL in MSA-3 and ERR-8, and no HL7 parser (ours included) could read the ACK."""
    (item,) = hl7v2_items(b"\x00" + ADT, Envelope(channel="web", received_at=0.0))
    assert item.error is not None and item.error.reason.isprintable()
    ack = build_ack(item.header, "AR", item.error.reason, control_id="A1", error_code=item.error.code)
    code, _, text = parse_ack(ack)
    assert code == "AR" and "\\x00MS" in text
    with pytest.raises(Hl7ParseError) as refused:  # the single-message reader (MLLP) says the same
        Er7Message.parse("\x00" + ADT.decode())
    assert refused.value.reason.isprintable()


def test_a_nul_in_msh18_is_a_refused_character_set_not_a_valueerror() -> None:
    """Found by test_fuzz_er7: `codecs.lookup` raises ValueError ("embedded null character"), not
    LookupError, so the label escaped the charset check (MLLP: traceback and aborted connection). The
    inbound rules refuse such a label by name, control characters shown (engine/hl7v2/charset.py)."""
    raw = ADT.replace(b"|2.5.1\r", b"|2.5.1|||||CHN|UTF\x00-8\r")
    (item,) = hl7v2_items(raw, Envelope(channel="web", received_at=0.0))
    assert item.error is not None and "'UTF<0x00>-8' contains control characters" in item.error.reason


def test_an_msh_line_without_a_field_separator_has_no_charset_rather_than_a_valueerror() -> None:
    """Found by tests/fuzz after the inbound rules were merged: `MSH` then CR made the raw MSH-18 reader
    split on an empty separator (ValueError inside data_received: the frame got no answer)."""
    from engine.hl7v2.charset import sniff_charset

    assert sniff_charset(b"MSH\r|^~\\") is None
