"""The inbound HL7 v2 rules every channel shares (engine/hl7v2/inbound.py), fed bytes directly.

Shapes: HL7 v2.5.1 ADT^A01 MSH (§2.14.9); 東 is 96 7C in GB 18030 (the issue #16 case).
"""

from __future__ import annotations

import pytest

from engine.errors import CharsetError, UnsupportedCharsetError
from engine.hl7v2.header import MshHeader, read_header
from engine.hl7v2.inbound import choose_charset, content_hash, dedupe_key, read_payload


def msh(cid: str = "C1", *, facility: bytes = b"NBH", stamp: str = "20240101120000", proc: str = "P",
        version: str = "2.5.1", charset: str = "", pid: str = "1") -> bytes:
    return (b"MSH|^~\\&|HIS|" + facility + f"|EMPI|NB|{stamp}||ADT^A01|{cid}|{proc}|{version}|||||CHN|"
            f"{charset}\rPID|{pid}\r".encode())


def header(raw: bytes, codec: str = "utf-8") -> MshHeader:
    return read_header(raw.decode(codec), raw, codec)


@pytest.mark.parametrize("cid", ["", '""', "x" * 200, "a\tb"])
def test_no_dedupe_key_from_an_empty_or_implausible_control_id(cid: str) -> None:
    assert dedupe_key(header(msh(cid))) is None


def test_the_dedupe_key_is_msh_4_and_msh_10() -> None:
    assert dedupe_key(header(msh("C-9"))) == "NBH|C-9"


def test_the_content_hash_ignores_msh_7_and_msh_10_and_nothing_else() -> None:
    def h(raw: bytes) -> str:
        return content_hash(header(raw), raw)

    base = h(msh("C1"))
    assert h(msh("C2", stamp="20250101000000")) == base
    assert h(msh("C1") + b"\r\n") == base
    assert h(msh("C1", pid="2")) != base
    assert h(msh("C1", proc="T")) != base


def test_the_content_hash_of_a_message_is_the_same_in_every_release() -> None:
    """Stored rows keep their hash (inside `dedupe_key`): a retry of a message stored by an earlier
    release must hash the same, on the raw-bytes path (UTF-8) and the decoded-text path (GB 18030).
    The digests are those of the release that introduced content hashes (issue #16)."""
    raw = msh("C1")
    assert content_hash(header(raw), raw) == "80d8d2a53c50f832"
    raw = msh("C1", facility="陽".encode("gb18030"), charset="GB 18030-2000")
    assert content_hash(header(raw, "gb18030"), raw) == "74352ac1491f554f"


def test_a_gb18030_header_whose_readings_disagree_and_are_both_implausible_gives_no_dedupe_key() -> None:
    """A cut lead byte before `|` (decoding swallows it) *and* a MSH-11 that is no processing ID: neither
    reading can be trusted, so the control id is not used to find duplicates."""
    raw = msh("C1", facility="陽".encode("gb18030") + b"\x96", proc="X", charset="GB 18030-2000")
    hdr = header(raw, "gb18030")
    assert not hdr.trusted and dedupe_key(hdr) is None


def test_a_truncated_gb18030_facility_is_read_from_the_raw_bytes() -> None:
    raw = msh("C1", facility="陽".encode("gb18030") + b"\x96", charset="GB 18030-2000")
    hdr = header(raw, "gb18030")
    assert hdr.trusted and hdr.control_id == "C1" and hdr.first(4) == "陽\ufffd"
    assert hdr.note is not None and "raw bytes" in hdr.note


def test_an_unknown_label_falls_back_to_utf8_only_when_the_bytes_decode() -> None:
    choice = choose_charset(msh(charset="NO-SUCH-SET"))
    assert (choice.label, choice.codec) == ("UTF-8", "utf-8") and "NO-SUCH-SET" in (choice.note or "")
    with pytest.raises(CharsetError, match="NO-SUCH-SET"):
        choose_charset(msh(charset="NO-SUCH-SET") + b"\xff\xfe")


@pytest.mark.parametrize("label", ["base64", "zlib_codec", "hex", "rot13", "idna", "punycode", "undefined"])
def test_a_label_that_is_not_a_text_encoding_is_refused(label: str) -> None:
    with pytest.raises(UnsupportedCharsetError):
        choose_charset(msh(charset=label))
    read = read_payload(msh("REF-1", charset=label))
    assert read.error is not None and read.header is not None and read.header.control_id == "REF-1"


def test_a_configured_charset_wins_and_an_unknown_one_is_an_error() -> None:
    assert choose_charset(msh(charset="UNICODE UTF-8"), "GB18030").codec == "gb18030"
    with pytest.raises(CharsetError):
        choose_charset(msh(), "no-such-charset")
