"""MSH-18 sniffing on raw bytes and decoding by HL7 table 0211 names."""

from __future__ import annotations

import pytest

from engine.errors import CharsetError
from engine.hl7v2.charset import decode, python_codec, sniff_charset

from .conftest import SAMPLES

MSH = "MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301||ADT^A01|1|P|2.5.1|||AL|NE|CHN|{cs}\rPID|1||X||{name}\r"


def test_sniff_reads_msh18_from_gb18030_bytes_without_decoding() -> None:
    """The GB 18030 sample declares 'GB 18030-2000'; its bytes are not UTF-8 but MSH is ASCII."""
    raw = (SAMPLES / "adt_a01_gb18030.hl7").read_bytes()
    assert sniff_charset(raw) == "GB 18030-2000"
    assert "孙^丽华" in decode(raw, "GB 18030-2000")
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")


def test_sniff_takes_the_first_repetition_and_handles_batches_and_bom() -> None:
    """MSH-18 'UNICODE UTF-8~GB 18030-2000' sniffs as the first; a batch is sniffed from its MSH."""
    raw = MSH.format(cs="UNICODE UTF-8~GB 18030-2000", name="王").encode()
    assert sniff_charset(raw) == "UNICODE UTF-8"
    assert sniff_charset(b"\xef\xbb\xbf" + raw) == "UNICODE UTF-8"
    assert sniff_charset(b"FHS|^~\\&|A\rBHS|^~\\&\r" + raw) == "UNICODE UTF-8"
    assert sniff_charset(MSH.format(cs="", name="x").encode()) is None
    assert sniff_charset(b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\r") is None
    assert sniff_charset(b'{"resourceType": "Patient"}') is None


@pytest.mark.parametrize(
    ("name", "codec"),
    [("UNICODE UTF-8", "utf-8"), ("GB 18030-2000", "gb18030"), ("8859/1", "latin-1"),
     ("ASCII", "ascii"), ("UNICODE", "utf-8"), ("8859/15", "iso8859-15"), ("utf8", "utf-8"),
     ("gbk", "gb18030"), ("cp936", "gbk")],
)
def test_table_0211_names_and_python_codec_names_map(name: str, codec: str) -> None:
    """Table 0211 names map to Python codecs; other names are looked up as codecs."""
    assert python_codec(name) == codec


def test_none_means_utf8_and_a_bom_is_dropped() -> None:
    """No MSH-18 decodes as UTF-8, without a leading byte-order mark."""
    assert decode(b"\xef\xbb\xbfMSH|", None) == "MSH|"


def test_undecodable_bytes_name_the_byte_offset_and_charset() -> None:
    """GB 18030 bytes read as UTF-8 fail with the first bad byte and its offset."""
    raw = MSH.format(cs="UNICODE UTF-8", name="王").encode("gb18030")
    offset = raw.index("王".encode("gb18030"))
    with pytest.raises(CharsetError) as info:
        decode(raw, "UNICODE UTF-8")
    assert info.value.reason == f"byte 0xCD at offset {offset} is not valid UTF-8"
    assert info.value.location == "MSH^1^18"


def test_unknown_charset_name_is_named_in_the_error() -> None:
    """An MSH-18 value that is neither Table 0211 nor a codec is a CharsetError naming it."""
    with pytest.raises(CharsetError, match="unknown character set 'KLINGON-8' in MSH-18") as info:
        decode(b"MSH|", "KLINGON-8")
    assert info.value.code == "103"
