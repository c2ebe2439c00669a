"""Er7Message: parsing, header properties, escapes and the precise reasons of Hl7ParseError."""

from __future__ import annotations

import pytest

from engine.errors import Hl7ParseError
from engine.hl7v2.encoding import Encoding
from engine.hl7v2.er7 import Er7Message

from .conftest import sample_text

MSH = ("MSH|^~\\&|HIS|NBDYYY^1.2.3^ISO|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|C1|P^T|2.5.1|||AL|ER||"
       "UNICODE UTF-8~GB 18030-2000")


def test_header_properties_follow_msh_numbering(adt_a01: str) -> None:
    """MSH-1 is the separator, so MSH-9 is the 8th split element and MSH-10 the control id."""
    msg = Er7Message.parse(adt_a01)
    assert msg.message_type == "ADT^A01"
    assert (msg.message_code, msg.trigger_event, msg.message_structure) == ("ADT", "A01", "ADT_A01")
    assert msg.control_id == "NBDYYY-ADT-20240301-000123"
    assert (msg.sending_application, msg.sending_facility) == ("HIS", "NBDYYY")
    assert (msg.receiving_application, msg.receiving_facility) == ("EMPI", "NBWJW")
    assert (msg.processing_id, msg.version, msg.charset) == ("P", "2.5.1", "UNICODE UTF-8")
    assert (msg.accept_ack_type, msg.application_ack_type) == ("AL", "NE")
    assert msg.encoding == Encoding()
    assert msg.get("MSH-1") == "|" and msg.get("MSH-2") == "^~\\&"


def test_header_takes_first_component_and_first_charset_repetition() -> None:
    """Sending facility is MSH-4.1, processing id the raw MSH-11, charset MSH-18's first repetition."""
    msg = Er7Message.parse(MSH)
    assert msg.sending_facility == "NBDYYY"
    assert msg.processing_id == "P^T"
    assert msg.charset == "UNICODE UTF-8"
    assert msg.header["message_type"] == "ADT^A01" and msg.header["kind"] == "hl7v2"


@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_cr_lf_and_crlf_terminators_give_the_same_segments(eol: str) -> None:
    """Segments split on CR, LF or CRLF; a trailing terminator adds no empty segment."""
    msg = Er7Message.parse(eol.join([MSH, "PID|1||X1", "PV1|1|I"]) + eol)
    assert [s.name for s in msg.segments()] == ["MSH", "PID", "PV1"]
    assert msg.get("PID-3") == "X1"


def test_lone_lf_inside_a_cr_terminated_message_is_field_content() -> None:
    """When CR is the terminator, an LF inside OBX-5 text is data, not a new segment."""
    msg = Er7Message.parse(MSH + "\rOBX|1|TX|||line one\nline two\r")
    assert msg.get("OBX-5") == "line one\nline two"


def test_custom_encoding_characters_are_honoured() -> None:
    """Any separators declared in MSH-1/MSH-2 are used, also a 3-character MSH-2 without '&'."""
    msg = Er7Message.parse("MSH#:*!#A#B#C#D#20240101##ADT:A04#9#P#2.4\rPID#1##X:::H&Y:PI*Z")
    assert msg.message_type == "ADT^A04"
    assert msg.get("PID-3[1].4") == "H&Y"
    assert msg.get("PID-3[2].1") == "Z"
    assert msg.encoding.subcomponent == ""


def test_v27_truncation_character_is_accepted_and_decoded() -> None:
    """A 5-character MSH-2 declares the truncation character; ``\\P\\`` decodes to it."""
    msg = Er7Message.parse(sample_text("adt_a01_v27_trunc.hl7"))
    assert msg.encoding.truncation == "#"
    assert msg.get("PID-11.1") == "中兴路#甲1号"


def test_escape_sequences_are_decoded_on_read() -> None:
    """\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ and \\Xhh\\ decode; unknown escapes stay literal."""
    msg = Er7Message.parse(sample_text("adt_a08_escapes.hl7"))
    assert msg.get("PID-11.1") == "鼓楼街道公园路|88号"
    assert msg.get("PID-11.2") == "3^2室"
    assert msg.get("PID-5[2].1") == "ZHANG&WEI"
    assert msg.get("NTE-3") == ("备注：家属电话~备用电话见\\联系人\\表\n过敏史：\\H\\青霉素\\N\\ N- 中")
    assert msg.segments("PID")[0].raw_value(11, 1, 1) == "鼓楼街道公园路\\F\\88号"


def test_hex_escape_falls_back_to_latin1_when_not_valid_in_the_charset() -> None:
    """\\XC3\\ alone is not UTF-8, so it is decoded as latin-1 rather than failing the read."""
    msg = Er7Message.parse(MSH + "\rNTE|1||a\\XC3\\b\\X1\\c\r")
    assert msg.get("NTE-3") == "aÃb\\X1\\c"


def test_absent_empty_and_hl7_null_values_read_as_none() -> None:
    """Absent fields, empty fields and the HL7 null "" are all None; get_all leaves them out."""
    msg = Er7Message.parse(sample_text("adt_a08_v231.hl7"))
    assert msg.get("PID-1") is None
    assert msg.get("PID-15") is None
    assert msg.segments("PID")[0].raw_value(15) == '""'
    assert msg.get("PID-99") is None and msg.get("ZZZ-1") is None
    assert msg.get_all("PID-3[*].4") == ["NBZYY", "CHN"]
    assert msg.get("PID-16") == "W"


def test_groups_collect_the_observations_of_each_order() -> None:
    """groups('OBR', ('OBX', 'NTE')) returns each OBR with its following OBX/NTE segments."""
    msg = Er7Message.parse(sample_text("oru_r01_v251_cbc.hl7"))
    [(obr, children)] = msg.groups("OBR", ("OBX", "NTE"))
    assert obr.get("4.2") == "血常规(五分类)"
    assert [c.name for c in children] == ["NTE"] + ["OBX"] * 20


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"resourceType": "Patient"}', 'payload starts with "{" (looks like JSON), expected "MSH"'),
        ("<Patient/>", 'payload starts with "<" (looks like XML), expected "MSH"'),
        ("", 'payload is empty, expected an HL7 v2 message starting with "MSH"'),
        ("FHS|^~\\&|A\rMSH|^~\\&", 'payload starts with "FHS" (a batch: split it with '
                                   "engine.hl7v2.batch.split_batch), expected \"MSH\""),
        ("MSH|^~\\&|HIS|H|E|N|20240101", "MSH-8 security missing: MSH has only 7 fields, "
                                        "12 are required (truncated header?)"),
        ("MSH|^~\\&|HIS|H|E|N|20240101|", "MSH-9 message type missing: MSH has only 8 fields, "
                                         "12 are required (truncated header?)"),
        ("MSH|^~\\&|HIS|H|E|N|20240101||ADT^A01|1|P", "MSH-12 version ID missing: MSH has only 11 "
                                                      "fields, 12 are required (truncated header?)"),
        ("MSH|^~\\&|HIS|H|E|N|20240101|||1|P|2.5", "MSH-9 message type is empty"),
        ("MSH|^~^&|HIS", 'encoding character \'^\' is declared twice in MSH-1/MSH-2 "|^~^&"'),
        ("MSH|^~|HIS|xxxxxxxx", 'MSH-2 encoding characters "^~" must be 3 to 5 characters (usually "^~\\&")'),
        ("MSH|^A\\&|HIS", 'encoding character \'A\' in MSH-1/MSH-2 "|^A\\&" is not a usable separator'),
        ("MSH|^~\\&|\x00\x01binary", "control character 0x00 at offset 9: binary or framed data, "
                                     "not HL7 text"),
    ],
)
def test_unparseable_text_raises_a_precise_reason(text: str, reason: str) -> None:
    """Each way a payload can fail to be HL7 v2 names what was found or what is missing."""
    with pytest.raises(Hl7ParseError) as info:
        Er7Message.parse(text)
    assert info.value.reason == reason


def test_missing_field_error_carries_table_0357_code_and_location() -> None:
    """A truncated MSH is 101 Required field missing, located at the missing MSH field."""
    with pytest.raises(Hl7ParseError) as info:
        Er7Message.parse("MSH|^~\\&|HIS|H|E|N|20240101|")
    assert (info.value.code, info.value.location) == ("101", "MSH^1^9")


def test_a_line_that_is_not_a_segment_is_rejected() -> None:
    """Text after MSH must be segments: 'hello' on a line of its own is an error, not ignored."""
    with pytest.raises(Hl7ParseError, match="line 2 does not start with a segment ID"):
        Er7Message.parse(MSH + "\rhello world\r")
