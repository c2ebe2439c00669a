"""ACK building and reading (HL7 v2.5.1 §2.9, tables 0008 / 0155 / 0357)."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.errors import Hl7ParseError
from engine.hl7v2.ack import build_ack, needs_ack, parse_ack
from engine.hl7v2.er7 import Er7Message

from .conftest import sample_text

NOW = datetime(2024, 3, 1, 10, 15, 30)


def test_aa_swaps_sender_and_receiver_and_echoes_control_id(adt_a01: str) -> None:
    """An AA has MSH-3/4 ↔ MSH-5/6, MSH-9 ACK^A01^ACK, the new MSH-10 and MSA-2 = received MSH-10."""
    ack = build_ack(Er7Message.parse(adt_a01), "AA", control_id="ACK0001", now=NOW)
    segs = ack.split("\r")
    assert segs[0] == ("MSH|^~\\&|EMPI|NBWJW|HIS|NBDYYY|20240301101530||ACK^A01^ACK|ACK0001|P|2.5.1"
                       "||||||UNICODE UTF-8")
    assert segs[1] == "MSA|AA|NBDYYY-ADT-20240301-000123|"
    assert segs[2:] == [""] and ack.endswith("\r")


def test_ae_has_an_err_segment_with_location_code_severity_and_escaped_text(adt_a01: str) -> None:
    """AE carries ERR-2 location, ERR-3 table 0357 code, ERR-4 severity and ERR-8 text, escaped."""
    ack = build_ack(Er7Message.parse(adt_a01), "AE", "PID-7 出生日期 bad|value", error_code="102",
                    location="PID^1^7", control_id="A2", now=NOW)
    msa, err = ack.split("\r")[1:3]
    assert msa == "MSA|AE|NBDYYY-ADT-20240301-000123|PID-7 出生日期 bad\\F\\value"
    assert err == "ERR||PID^1^7|102^Data type error^HL70357|E||||PID-7 出生日期 bad\\F\\value"


def test_ack_keeps_the_senders_encoding_characters() -> None:
    """A message with '#:*!' separators is answered with the same MSH-1/MSH-2."""
    msg = Er7Message.parse("MSH#:*!#A#B#C#D#2024##ADT:A04#9#T#2.4")
    ack = build_ack(msg, "AR", "x#y", error_code="200", location="MSH^1^9", control_id="Z", now=NOW)
    assert ack.startswith("MSH#:*!#C#D#A#B#20240301101530##ACK:A04:ACK#Z#T#2.4\r")
    assert "ERR##MSH:1:9#200:Unsupported message type:HL70357#E####x!F!y" in ack


def test_unparseable_input_gets_a_minimal_ack_with_defaults() -> None:
    """msg None: default separators, P / 2.5.1, MSH-9 'ACK', empty MSA-2, ERR 100."""
    ack = build_ack(None, "AR", "no MSH", error_code="100", control_id="N1", now=NOW)
    assert ack.split("\r")[:3] == [
        "MSH|^~\\&|||||20240301101530||ACK|N1|P|2.5.1",
        "MSA|AR||no MSH",
        "ERR|||100^Segment sequence error^HL70357|E||||no MSH",
    ]
    assert Er7Message.parse(ack).message_type == "ACK"


def test_unknown_ack_code_is_a_value_error() -> None:
    """MSA-1 must be in table 0008."""
    with pytest.raises(ValueError, match="table 0008"):
        build_ack(None, "OK", control_id="1")


def test_parse_ack_round_trips_what_build_ack_wrote(adt_a01: str) -> None:
    """parse_ack returns (code, acknowledged control id, text)."""
    msg = Er7Message.parse(adt_a01)
    assert parse_ack(build_ack(msg, "AA", control_id="1", now=NOW)) == (
        "AA", "NBDYYY-ADT-20240301-000123", "")
    assert parse_ack(build_ack(msg, "CR", "a\nb", control_id="1", now=NOW)) == (
        "CR", "NBDYYY-ADT-20240301-000123", "a\nb")
    only_err = "MSH|^~\\&|R|R|S|S|2024||ACK|9|P|2.5.1\rMSA|AE|C9\rERR|||207^Application error^HL70357|E"
    assert parse_ack(only_err) == ("AE", "C9", "Application error")


def test_parse_ack_without_msa_or_with_a_bad_code_fails(adt_a01: str) -> None:
    """A reply without MSA, or with an MSA-1 outside table 0008, is not an ACK."""
    with pytest.raises(Hl7ParseError, match="no MSA"):
        parse_ack(adt_a01)
    with pytest.raises(Hl7ParseError, match="not an acknowledgment code"):
        parse_ack("MSH|^~\\&|R|R|S|S|2024||ACK|9|P|2.5.1\rMSA|OK|1")


@pytest.mark.parametrize(
    ("msh15", "code", "expected"),
    [("", "AA", True), ("", "AE", True), ("AL", "CA", True), ("NE", "CA", False), ("NE", "CE", False),
     ("ER", "CA", False), ("ER", "CE", True), ("ER", "AR", True), ("SU", "CA", True),
     ("SU", "CR", False)],
)
def test_needs_ack_follows_msh15(msh15: str, code: str, expected: bool) -> None:
    """Table 0155: AL always, NE never, ER on errors, SU on success, empty = original mode."""
    msg = Er7Message.parse(f"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5.1|||{msh15}|NE")
    assert needs_ack(msg, code) is expected


def test_the_a31_sample_asks_for_no_accept_ack() -> None:
    """The EMPI A31 sample sends MSH-15 NE: no commit ACK even on success."""
    msg = Er7Message.parse(sample_text("adt_a31_crlf.hl7"))
    assert needs_ack(msg, "CA") is False
