"""Er7Message, Segment and Repetition as engine.source.Source (what `each:` mappings use)."""

from __future__ import annotations

import pytest

from engine.errors import PathSyntaxError
from engine.hl7v2.er7 import Er7Message
from engine.message_view import HEADER_KEYS, Source, open_source

from .conftest import SAMPLES, sample_text


def test_message_segment_and_repetition_satisfy_the_protocol(adt_a01: str) -> None:
    """All three HL7 views are Sources with kind 'hl7v2' and the full header."""
    msg = Er7Message.parse(adt_a01)
    for src in (msg, msg.children("PID")[0], msg.children("PID-3[*]")[0]):
        assert isinstance(src, Source)
        assert src.kind == "hl7v2"
        assert set(src.header) == set(HEADER_KEYS)


def test_children_obx_gives_one_relative_source_per_segment() -> None:
    """children('OBX[*]') yields 20 rows whose paths are relative to each OBX."""
    msg = Er7Message.parse(sample_text("oru_r01_v251_cbc.hl7"))
    rows = msg.children("OBX[*]")
    assert len(rows) == 20 and len(msg.children("OBX")) == 20
    assert [r.get("3.1") for r in rows[:2]] == ["6690-2", "789-8"]
    assert rows[0].get("6.2") == "10*9/L"
    assert rows[0].get("PID-5.1") == "王"  # absolute paths read the whole message


def test_children_of_an_order_are_its_own_observations() -> None:
    """Inside children('OBR[*]'), children('OBX[*]') are the OBX after that OBR only."""
    msg = Er7Message.parse(sample_text("oru_r01_v251_cbc.hl7"))
    [order] = msg.children("OBR[*]")
    assert order.get("4.1") == "58410-2"
    assert len(order.children("OBX[*]")) == 20
    assert [n.get("3") for n in order.children("NTE")] == ["标本溶血(轻度)，结果仅供参考"]
    assert order.children("OBX[2]")[0].get("5") == "4.52"


def test_children_of_a_repeating_field_are_its_repetitions(adt_a01: str) -> None:
    """children('PID-3[*]') yields one Source per identifier; paths are component[.sub]."""
    ids = Er7Message.parse(adt_a01).children("PID-3[*]")
    assert [(i.get("1"), i.get("5")) for i in ids] == [
        ("0001234567", "PI"), ("330203198503120171", "NNCHN"), ("A02219876", "HC")]
    assert ids[0].get("4.1") == "NBDYYY" and ids[0].get("4.3") == "ISO"
    assert ids[1].get("2") is None and ids[1].get_all("1") == ["330203198503120171"]
    with pytest.raises(PathSyntaxError):
        ids[0].children("1")


def test_children_below_a_field_is_a_path_error(adt_a01: str) -> None:
    """A component path is not a repeating group."""
    with pytest.raises(PathSyntaxError, match="names a component"):
        Er7Message.parse(adt_a01).children("PID-3.1")


def test_open_source_decodes_bytes_by_msh18() -> None:
    """open_source on GB 18030 bytes reads the declared charset and returns an Er7Message."""
    src = open_source((SAMPLES / "adt_a01_gb18030.hl7").read_bytes(), content_type="application/hl7-v2")
    assert src.get("PID-5.1") == "孙" and src.header["charset"] == "GB 18030-2000"


def test_open_source_rejects_an_unknown_content_type() -> None:
    """A content type that is neither HL7 v2 nor FHIR is a ValueError (a configuration mistake)."""
    with pytest.raises(ValueError, match="neither HL7 v2 nor FHIR"):
        open_source(b"x", content_type="image/png")
