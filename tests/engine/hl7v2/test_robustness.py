"""Damaged input: the reader either refuses it with Hl7ParseError or reads it without crashing."""

from __future__ import annotations

import random

import pytest

from engine.errors import Hl7ParseError
from engine.hl7v2.ack import build_ack, parse_ack
from engine.hl7v2.batch import split_batch
from engine.hl7v2.er7 import Er7Message

from .conftest import all_messages

PATHS = ("PID-5.1", "PID-3[*].1", "PID-3[CX.5=ID].1", "OBX[*]-5", "MSH-9.2", "MSH-2", "MSH-1",
         "PID-3[2].4.2", "PID-11.1", "NTE-3", "MSH-18")
ALPHABET = "|^~\\&#\r\nMSHPIDXFSTRE.br0123 中"
MESSAGES = all_messages()


def mutate(text: str, rnd: random.Random) -> str:
    """Delete, insert separators/escapes, or truncate at a few random places."""
    chars = list(text)
    for _ in range(rnd.randint(1, 8)):
        op, i = rnd.random(), rnd.randrange(len(chars) + 1)
        if op < 0.4 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op < 0.85:
            chars.insert(i, rnd.choice(ALPHABET))
        else:
            chars = chars[:i]
    return "".join(chars)


@pytest.mark.parametrize(("name", "text"), MESSAGES, ids=[n for n, _ in MESSAGES])
def test_mutated_samples_parse_or_fail_with_hl7_parse_error_only(name: str, text: str) -> None:
    """300 seeded mutations per sample: no IndexError, RecursionError, ... anywhere on the read path."""
    rnd = random.Random(name)
    for _ in range(300):
        damaged = mutate(text, rnd)
        try:
            split_batch(damaged)
        except Hl7ParseError:
            pass
        try:
            msg = Er7Message.parse(damaged)
        except Hl7ParseError:
            continue
        for path in PATHS:
            msg.get(path)
            msg.get_all(path)
        assert msg.header["kind"] == "hl7v2"
        for seg in msg.segments():
            seg.get("1")
            seg.children("3[*]")
        assert parse_ack(build_ack(msg, "AE", "x", control_id="1"))[0] == "AE"


def test_an_escape_inside_msh18_does_not_recurse() -> None:
    """Decoding MSH-18 needs the codec MSH-18 names: the codec is taken from the raw value."""
    msg = Er7Message.parse("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5.1||||||UNICODE UT\\F\\-8")
    assert msg.charset == "UNICODE UT|-8"
    assert msg.get("MSH-18") == "UNICODE UT|-8"
