"""One segment-terminator rule for every reader (engine/hl7v2/lines.py, HL7 v2.5.1 §2.8)."""

from __future__ import annotations

import pytest

from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import sniff_charset
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.header import read_header
from engine.hl7v2.lines import first_line_end, split_segments

MSH = "MSH|^~\\&|HIS|NBH|EMPI|NB|20240101||ADT^A01|{cid}|P|2.5.1|||||CHN|UNICODE UTF-8"


@pytest.mark.parametrize(("text", "lines"), [
    ("A|1\rB|2\r", ["A|1", "B|2"]),
    ("A|1\r\nB|2\r\n", ["A|1", "B|2"]),
    ("A|1\nB|2\n", ["A|1", "B|2"]),
    ("A|1\nB|2\r", ["A|1", "B|2"]),  # the only CR is the final one: LF separates the segments
    ("A|1\nB|2\r\r\n", ["A|1", "B|2"]),
    ("A|x\ny\rB|2\r", ["A|x\ny", "B|2"]),  # CR separates segments: a lone LF is field content
])
def test_cr_ends_a_segment_and_lf_only_when_the_text_has_no_cr_before_its_end(
        text: str, lines: list[str]) -> None:
    assert split_segments(text) == lines
    assert first_line_end(text.encode()) == len(lines[0])


def test_every_reader_splits_an_lf_message_with_a_final_cr_the_same_way() -> None:
    text = MSH.format(cid="1") + "\nPID|1||42\n" + MSH.format(cid="2") + "\nPID|1||43\r"
    parts = split_batch(text)
    assert len(parts) == 2
    for part, cid in zip(parts, ("1", "2"), strict=True):
        msg = Er7Message.parse(part)
        hdr = read_header(part, part.encode(), "utf-8")
        assert hdr.control_id == msg.control_id == cid and hdr.width == 18
        assert msg.get("PID-3") in ("42", "43")
    one = MSH.format(cid="3") + "\nPID|1||44\r"
    assert read_header(one, one.encode(), "utf-8", single=True).width == 18
    assert sniff_charset(one.encode()) == "UNICODE UTF-8"
