"""HL7 v2 paths: compile errors name the column, and every path form reads the right value."""

from __future__ import annotations

import pytest

from engine.errors import PathSyntaxError
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.path import ALL, FIRST, Path, RepFilter, compile_path

from .conftest import sample_text


@pytest.fixture
def msg(adt_a01: str) -> Er7Message:
    """The parsed ADT^A01 sample."""
    return Er7Message.parse(adt_a01)


def test_compile_builds_every_part() -> None:
    """A path with segment index, repetition filter, component and subcomponent compiles fully."""
    p = Path.compile("PID[1]-3[CX.4.1=NBDYYY].4.2")
    assert (p.segment, p.seg_index, p.field, p.rep) == ("PID", 1, 3, FIRST)
    assert p.rep_filter == RepFilter(4, 1, "NBDYYY")
    assert (p.component, p.subcomponent) == (4, 2)
    assert compile_path("OBX[*]").seg_index == ALL and compile_path("OBX[*]").field is None


def test_compiled_paths_are_cached() -> None:
    """Compiling the same text twice returns the same object (lru_cache)."""
    assert compile_path("PID-5.1") is compile_path("PID-5.1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pid-5", "column 1: expected a segment ID such as 'PID', found 'p'"),
        ("PID5", "column 4: expected '-' and a field number, found '5'"),
        ("PID-", "column 5: expected a field number, found end of path"),
        ("PID-0", "column 5: expected a field number (numbering starts at 1), found '0'"),
        ("PID-5.", "column 7: expected a component number, found end of path"),
        ("PID-5.1.2.3", "column 10: expected end of path, found '.'"),
        ("PID-3[", "column 7: expected a repetition index, '*' or a filter such as 'CX.5=ID', found end"),
        ("PID-3[CX5=ID]", "column 10: expected '.' after the data type name (as in 'CX.5=ID')"),
        ("PID-3[CX.5]", "column 11: expected '=' and a value, found ']'"),
        ("PID-3[5=ID", "column 11: expected ']', found end of path"),
        ("OBX[x]-5", "column 5: expected a segment index or '*', found 'x'"),
        ("PID-5x", "column 6: expected '.' and a number, found 'x'"),
    ],
)
def test_malformed_paths_name_the_column_and_what_was_expected(text: str, message: str) -> None:
    """PathSyntaxError says where (1-based column) and what the parser expected."""
    with pytest.raises(PathSyntaxError) as info:
        compile_path(text)
    assert message in str(info.value)
    assert info.value.path == text


def test_field_component_and_subcomponent_reads(msg: Er7Message) -> None:
    """PID-5, PID-5.1, PID-3.4.2 read the first repetition at each depth."""
    assert msg.get("PID-5") == "王^建国^^^^^L"
    assert msg.get("PID-5.1") == "王"
    assert msg.get("PID-5.2") == "建国"
    assert msg.get("PID-3.4.2") == "1.2.156.112636.1.1"
    assert msg.get("PID-7") == "19850312"
    assert msg.get("MSH-10") == "NBDYYY-ADT-20240301-000123"
    assert msg.get("MSH-9.2") == "A01"


def test_repetition_index_star_and_filters(msg: Er7Message) -> None:
    """[n], [*] and [CX.5=value] / [5=value] select repetitions."""
    assert msg.get("PID-3[2].1") == "330203198503120171"
    assert msg.get_all("PID-3[*].1") == ["0001234567", "330203198503120171", "A02219876"]
    assert msg.get_all("PID-3[*].5") == ["PI", "NNCHN", "HC"]
    assert msg.get("PID-3[CX.5=NNCHN].1") == "330203198503120171"
    assert msg.get("PID-3[5=HC].1") == "A02219876"
    assert msg.get("PID-3[5='HC'].1") == "A02219876"
    assert msg.get("PID-3[5=XX].1") is None
    assert msg.get("PID-3[9].1") is None
    assert msg.get("PID-5[2].1") == "WANG"


def test_segment_index_and_star_select_segments() -> None:
    """OBX-5 is the first OBX, OBX[2]-5 the second, OBX[*]-5 all of them in order."""
    msg = Er7Message.parse(sample_text("oru_r01_v251_cbc.hl7"))
    assert msg.get("OBX-5") == "11.8"
    assert msg.get("OBX[2]-5") == "4.52"
    values = msg.get_all("OBX[*]-5")
    assert len(values) == 20 and values[-1] == "0.70"
    assert msg.get_all("OBX[*]-6.2")[:3] == ["10*9/L", "10*12/L", "g/L"]
    assert msg.get("OBX[21]-5") is None
    assert msg.get("OBX[*]-3[1].1") == "6690-2"


def test_segments_returns_every_segment_of_a_name() -> None:
    """segments('OBX') lists all 20 OBX; a Segment reads relative paths."""
    msg = Er7Message.parse(sample_text("oru_r01_v251_cbc.hl7"))
    obx = msg.segments("OBX")
    assert len(obx) == 20
    assert obx[8].get("3.2") == "血小板计数" and obx[8].get("8") == "L"
    assert obx[0].get_all("3[*].1") == ["6690-2"]
    assert msg.segments("ZZZ") == []
