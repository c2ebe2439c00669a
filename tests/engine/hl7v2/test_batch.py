"""split_batch: FHS/BHS envelopes and several bare messages become single-message texts."""

from __future__ import annotations

import pytest

from engine.errors import Hl7ParseError
from engine.hl7v2.batch import split_batch
from engine.hl7v2.er7 import Er7Message

from .conftest import sample_text


def test_batch_file_splits_into_its_messages_without_envelope() -> None:
    """The FHS/BHS sample holds three ADT^A04 messages; no FHS/BHS/BTS/FTS remain."""
    parts = split_batch(sample_text("batch_adt_a04_fhs.hl7"))
    assert len(parts) == 3
    msgs = [Er7Message.parse(p) for p in parts]
    assert [m.control_id for m in msgs] == [f"XS-A04-20240327-000{n}" for n in (1, 2, 3)]
    assert all({s.name for s in m.segments()} == {"MSH", "EVN", "PID", "PV1"} for m in msgs)


def test_single_message_is_returned_unchanged(adt_a01: str) -> None:
    """A text with one MSH comes back as [text]."""
    assert split_batch(adt_a01) == [adt_a01]


def test_bare_messages_without_envelope_are_split_keeping_lf_terminators() -> None:
    """Two MSH in one LF-terminated text give two LF-terminated messages."""
    text = "MSH|^~\\&|A\nPID|1\nMSH|^~\\&|B\nPID|2\n"
    assert split_batch(text) == ["MSH|^~\\&|A\nPID|1\n", "MSH|^~\\&|B\nPID|2\n"]


def test_segments_before_any_msh_are_an_error() -> None:
    """A batch whose first non-envelope segment is not MSH cannot be split safely."""
    with pytest.raises(Hl7ParseError, match='"PID" segment before any MSH'):
        split_batch("BHS|^~\\&\rPID|1\rMSH|^~\\&|A\r")
    with pytest.raises(Hl7ParseError, match="no MSH"):
        split_batch("FHS|^~\\&\rFTS|0\r")
