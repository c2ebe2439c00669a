"""Compiled readers (engine/hl7v2/access.py) return exactly what `get` returns, for every path shape."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pytest

from engine.hl7v2.access import message_reader, repetition_reader, segment_reader
from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import decode, sniff_charset
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.path import compile_path

SAMPLES = sorted(Path("tests/samples").glob("*.hl7"))
ODD = [
    # 3-character MSH-2 (no subcomponents), HL7 nulls, escapes, empty repetitions, repeated segments
    "MSH|^~\\|A|F|B|G|20240301||ADT^A01|C1|P|2.3\rPID|1||a^b^c^d&e~\"\"~x\\F\\y^^^^PI||\"\"|~~z\rOBX|1|x\rOBX|2|y",
    "MSH|^~\\&|A|F|B|G|20240301||ADT^A01|C1|P|2.5\rPID|1||^^^^MR~7^^^^PI&q~~8^^^^PI||a&b&c^d\\T\\e&f\rZ01",
]


def _field_paths() -> list[str]:
    reps = ["", "[1]", "[2]", "[3]", "[*]", "[CX.5=PI]", "[5=MR]", "[4.2=q]", "[1=x\\F\\y]"]
    tails = ["", ".1", ".2", ".4", ".4.1", ".4.2", ".1.3", ".9"]
    return [f"{f}{r}{t}" for f, r, t in product(range(1, 13), reps, tails)]


def _messages() -> list[Er7Message]:
    out = []
    for path in SAMPLES:
        raw = path.read_bytes()
        text = decode(raw, sniff_charset(raw))
        out += [Er7Message.parse(t) for t in split_batch(text)] if "BHS" in text else [Er7Message.parse(text)]
    return out + [Er7Message.parse(t) for t in ODD]


MESSAGES = _messages()
FIELD_PATHS = _field_paths()


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.control_id or "odd")
def test_segment_readers_read_what_segment_get_reads(msg: Er7Message) -> None:
    """For each segment and field path, `segment_reader(path)(seg) == seg.get(path)`."""
    for seg in msg.segments():
        for rel in FIELD_PATHS:
            assert segment_reader(compile_path(rel, "field"))(seg) == seg.get(rel), (seg.name, rel)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.control_id or "odd")
def test_message_readers_read_what_message_get_reads(msg: Er7Message) -> None:
    """For each segment name, index form and field path, the compiled reader equals `Er7Message.get`."""
    names = sorted({s.name for s in msg.segments()} | {"ZZZ"})
    for name, idx in product(names, ["", "[1]", "[2]", "[*]"]):
        assert message_reader(compile_path(name + idx))(msg) == msg.get(name + idx)
        for rel in FIELD_PATHS[::3]:
            path = f"{name}{idx}-{rel}"
            assert message_reader(compile_path(path))(msg) == msg.get(path), path


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.control_id or "odd")
def test_repetition_readers_read_what_repetition_get_reads(msg: Er7Message) -> None:
    """Inside a field repetition (``PID-3[*]``), component readers equal `Repetition.get`."""
    for seg in msg.segments():
        for field in range(1, min(len(seg.fields), 12)):
            for rep in seg.children(f"{field}[*]"):
                for rel in ("1", "2", "4", "4.1", "4.2", "1.3", "9"):
                    assert repetition_reader(compile_path(rel, "component"))(rep) == rep.get(rel)  # type: ignore[arg-type]


def test_the_control_character_pre_check_agrees_with_the_regex() -> None:
    """`has_control_chars` is true exactly when `CONTROL_CHARS` finds something, for every code point
    of the BMP (lone surrogates included) and a sample of the supplementary planes."""
    from engine.hl7v2.validate import CONTROL_CHARS, has_control_chars

    points = [*range(0x10000), *range(0x10000, 0x110000, 251)]
    for cp in points:
        text = f"MSH|a{chr(cp)}b"
        assert has_control_chars(text) == bool(CONTROL_CHARS.search(text)), hex(cp)


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: m.control_id or "odd")
def test_header_values_are_the_msh_fields_they_name(msg: Er7Message) -> None:
    """The header read in one pass gives what the documented MSH paths give (absent/null as "")."""
    def first(n: int) -> str:
        return msg.get(f"MSH-{n}.1") or ""

    h = msg.header
    code, trigger = msg.get("MSH-9.1") or "", msg.get("MSH-9.2") or ""
    assert (h["message_code"], h["trigger_event"]) == (code, trigger)
    assert h["message_type"] == (f"{code}^{trigger}" if trigger else code)
    assert h["message_structure"] == (msg.get("MSH-9.3") or "")
    assert h["control_id"] == (msg.get("MSH-10") or "")
    assert [h["sending_application"], h["sending_facility"], h["receiving_application"],
            h["receiving_facility"], h["version"], h["charset"]] == [first(n) for n in (3, 4, 5, 6, 12, 18)]
    assert h["processing_id"] == msg.msh.raw_value(11)
    assert msg.sending_facility == h["sending_facility"] and msg.message_type == h["message_type"]
