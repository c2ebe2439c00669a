"""The HL7 v2 samples are what tests/samples/README.md says they are (others map against them)."""

from __future__ import annotations

import re

import pytest

from engine.hl7v2.charset import sniff_charset
from engine.hl7v2.er7 import Er7Message

from .conftest import SAMPLES, all_messages

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
MESSAGES = all_messages()


def gb11643_valid(number: str) -> bool:
    """GB 11643-1999 check character: "10X98765432"[sum(digit * weight) mod 11]."""
    if not re.fullmatch(r"\d{17}[\dX]", number):
        return False
    return "10X98765432"[sum(int(d) * w for d, w in zip(number, WEIGHTS, strict=False)) % 11] == number[17]


def test_every_sample_file_is_documented_in_the_readme() -> None:
    """Each *.hl7 and fhir/* file has a row in tests/samples/README.md."""
    readme = (SAMPLES / "README.md").read_text(encoding="utf-8")
    files = [p.name for p in SAMPLES.glob("*.hl7")] + [p.name for p in (SAMPLES / "fhir").iterdir()]
    assert [f for f in files if f"`{f}`" not in readme] == []


@pytest.mark.parametrize(("name", "text"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_citizen_ids_are_valid_ningbo_numbers_matching_sex_and_birth_date(name: str, text: str) -> None:
    """Every 18-digit PID-3 / PID-19 id is GB 11643-valid, from 3302xx, with PID-7 birth date and sex."""
    msg = Er7Message.parse(text)
    ids = [i for i in [*msg.get_all("PID-3[*].1"), *msg.get_all("PID-19")] if len(i) == 18]
    assert ids, name
    for number in ids:
        assert gb11643_valid(number) and number.startswith("3302"), number
        assert number[6:14] == msg.get("PID-7"), name
        assert ("M" if int(number[16]) % 2 else "F") == msg.get("PID-8"), name


@pytest.mark.parametrize(
    ("name", "message_type", "version", "charset"),
    [("adt_a01_v251_utf8.hl7", "ADT^A01", "2.5.1", "UNICODE UTF-8"),
     ("adt_a04_v24.hl7", "ADT^A04", "2.4", "UNICODE"),
     ("adt_a08_v231.hl7", "ADT^A08", "2.3.1", None),
     ("adt_a03_lf.hl7", "ADT^A03", "2.5", "UNICODE UTF-8"),
     ("adt_a28_zpi.hl7", "ADT^A28", "2.5", "UNICODE UTF-8"),
     ("adt_a31_crlf.hl7", "ADT^A31", "2.5.1", "UNICODE UTF-8"),
     ("oru_r01_v251_cbc.hl7", "ORU^R01", "2.5.1", "UNICODE UTF-8"),
     ("vxu_v04_v251.hl7", "VXU^V04", "2.5.1", "UNICODE UTF-8"),
     ("siu_s12_v251.hl7", "SIU^S12", "2.5.1", "UNICODE UTF-8"),
     ("mdm_t02_v251.hl7", "MDM^T02", "2.5.1", "UNICODE UTF-8"),
     ("orm_o01_v24.hl7", "ORM^O01", "2.4", "UNICODE UTF-8"),
     ("adt_a01_gb18030.hl7", "ADT^A01", "2.5", "GB 18030-2000"),
     ("adt_a08_escapes.hl7", "ADT^A08", "2.5.1", "UNICODE UTF-8"),
     ("adt_a01_v27_trunc.hl7", "ADT^A01", "2.7", "UNICODE UTF-8")],
)
def test_sample_type_version_and_charset_match_the_readme(name: str, message_type: str, version: str,
                                                          charset: str | None) -> None:
    """MSH-9, MSH-12 and MSH-18 of each sample are as documented."""
    from .conftest import sample_text

    raw = (SAMPLES / name).read_bytes()
    assert sniff_charset(raw) == charset
    msg = Er7Message.parse(sample_text(name))
    assert (msg.message_type, msg.version) == (message_type, version)


def test_line_endings_are_as_documented() -> None:
    """LF, CRLF and CR samples really use those terminators."""
    assert b"\r" not in (SAMPLES / "adt_a03_lf.hl7").read_bytes()
    assert (SAMPLES / "adt_a31_crlf.hl7").read_bytes().count(b"\r\n") == 4
    assert b"\n" not in (SAMPLES / "adt_a01_v251_utf8.hl7").read_bytes()
