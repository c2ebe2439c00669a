"""Shared helpers for HL7 v2 tests: sample files live in tests/samples/ (see its README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import decode, sniff_charset

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def sample_text(name: str) -> str:
    """The decoded text of one sample file (bytes decoded by their MSH-18)."""
    raw = (SAMPLES / name).read_bytes()
    return decode(raw, sniff_charset(raw))


def all_messages() -> list[tuple[str, str]]:
    """(file name + index, message text) for every message in every ``*.hl7`` sample."""
    out = []
    for path in sorted(SAMPLES.glob("*.hl7")):
        for i, text in enumerate(split_batch(sample_text(path.name)), 1):
            out.append((f"{path.name}#{i}", text))
    return out


@pytest.fixture
def adt_a01() -> str:
    """The ADT^A01 v2.5.1 UTF-8 sample text."""
    return sample_text("adt_a01_v251_utf8.hl7")
