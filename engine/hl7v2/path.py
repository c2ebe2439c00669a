"""Compiled HL7 v2 path expressions (1-based, as in HL7 v2.5.1 §2.5 / §2.6 field numbering).

Grammar (``[]`` optional parts)::

    absolute    SEG [ "[" IDX "]" ] [ "-" field ]          PID-5.1   OBX[2]-5   OBX[*]   MSH-9.2
    field       N [ "[" REP "]" ] [ "." N [ "." N ] ]       5   3[*].1   3[CX.5=ID].1   5.1.2
    component   N [ "." N ]                                1   4.2   (inside one field repetition)
    IDX / REP   "*" | N | [TYPE "."] N ["." N] "=" VALUE    (REP only: repetition filter)

``SEG`` is a segment ID (``PID``, ``ZPI``); ``N`` a positive integer; ``VALUE`` runs to ``]``,
optionally in single or double quotes. An omitted segment or repetition index means *the first* for
`get`-style reads and *every one* for ``children`` (``children("OBX")`` == ``children("OBX[*]")``).

Paths are compiled once and cached (`compile_path` is `functools.lru_cache`d); a malformed path raises
`engine.errors.PathSyntaxError` naming the 1-based column and what was expected there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from engine.errors import PathSyntaxError

ALL = -1
"""Index value for ``[*]``."""
FIRST = 0
"""Index value when no index was written (first, or all for ``children``)."""

Mode = Literal["absolute", "field", "component"]


@dataclass(frozen=True, slots=True)
class RepFilter:
    """``[CX.5=ID]``: select repetitions whose component (and subcomponent) equals ``value``."""

    component: int
    subcomponent: int | None
    value: str


@dataclass(frozen=True, slots=True)
class Path:
    """One compiled path; ``segment`` is ``None`` for field- or component-relative paths."""

    text: str
    segment: str | None = None
    seg_index: int = FIRST
    field: int | None = None
    rep: int = FIRST
    rep_filter: RepFilter | None = None
    component: int | None = None
    subcomponent: int | None = None

    @staticmethod
    def compile(text: str, mode: Mode = "absolute") -> Path:
        """Compile ``text`` (cached); see the module docstring for the grammar."""
        return compile_path(text, mode)


@lru_cache(maxsize=4096)
def compile_path(text: str, mode: Mode = "absolute") -> Path:
    """Parse ``text`` into a `Path`; raise `PathSyntaxError` on the first unexpected character."""
    return _Parser(text).parse(mode)


class _Parser:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text, self.pos = text.strip(), 0

    def fail(self, expected: str) -> PathSyntaxError:
        found = repr(self.text[self.pos]) if self.pos < len(self.text) else "end of path"
        return PathSyntaxError(
            f"HL7 path {self.text!r}: column {self.pos + 1}: expected {expected}, found {found}",
            path=self.text)

    def peek(self, ch: str) -> bool:
        return self.text.startswith(ch, self.pos)

    def take(self, ch: str) -> bool:
        if self.peek(ch):
            self.pos += len(ch)
            return True
        return False

    def number(self, what: str) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in "0123456789":
            self.pos += 1
        if start == self.pos:
            raise self.fail(what)
        value = int(self.text[start:self.pos])
        if value < 1:
            self.pos = start
            raise self.fail(f"{what} (numbering starts at 1)")
        return value

    def parse(self, mode: Mode) -> Path:
        seg: str | None = None
        seg_index = FIRST
        if mode == "absolute":
            seg = self.text[:3]
            if not (len(seg) == 3 and seg.isascii() and seg.isalnum() and seg[0].isalpha()
                    and seg.isupper()):
                raise self.fail("a segment ID such as 'PID'")
            self.pos = 3
            if self.take("["):
                seg_index = ALL if self.take("*") else self.number("a segment index or '*'")
                if not self.take("]"):
                    raise self.fail("']'")
            if self.pos == len(self.text):
                return Path(self.text, seg, seg_index)
            if not self.take("-"):
                raise self.fail("'-' and a field number")
        field: int | None = None
        rep, rep_filter = FIRST, None
        if mode != "component":
            field = self.number("a field number")
            if self.take("["):
                rep, rep_filter = self.repetition()
        comp = sub = None
        if mode == "component" or self.take("."):
            comp = self.number("a component number")
            if self.take("."):
                sub = self.number("a subcomponent number")
        if self.pos != len(self.text):
            raise self.fail("end of path" if sub else "'.' and a number")
        return Path(self.text, seg, seg_index, field, rep, rep_filter, comp, sub)

    def repetition(self) -> tuple[int, RepFilter | None]:
        result: tuple[int, RepFilter | None]
        if self.take("*"):
            result = (ALL, None)
        else:
            typed = self.pos < len(self.text) and self.text[self.pos].isalpha()
            if typed:  # "CX." data type prefix: documentation only
                while self.pos < len(self.text) and self.text[self.pos].isalnum():
                    self.pos += 1
                if not self.take("."):
                    raise self.fail("'.' after the data type name (as in 'CX.5=ID')")
            num = self.number("a repetition index, '*' or a filter such as 'CX.5=ID'")
            if not typed and self.peek("]"):
                result = (num, None)
            else:
                sub = self.number("a subcomponent number") if self.take(".") else None
                if not self.take("="):
                    raise self.fail("'=' and a value")
                end = self.text.find("]", self.pos)
                if end < 0:
                    self.pos = len(self.text)
                    raise self.fail("']'")
                value = self.text[self.pos:end].strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                self.pos = end
                result = (FIRST, RepFilter(num, sub, value))
        if not self.take("]"):
            raise self.fail("']'")
        return result
