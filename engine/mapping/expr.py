"""Conditions in routes: `match.when`, `filter`, and the `when` transform.

A condition is a tiny boolean language over source paths, compiled once at route load::

    PID-8 == 'M'                               equality with a quoted literal
    MSH-11 != 'T'
    PV1-2 in ['I', 'E']                        membership
    PID-3[CX.5=NNCHN].1 exists                 the path has a (non-empty) value
    PID-29 empty                               the path has no value
    OBX-2 =~ '^(NM|SN)$'                       regular expression search
    PID-7                                      bare operand: true when non-empty
    value == 'X'                               `value`: the field value being transformed
    header.sending_facility == 'NBDYYY'        a `Source.header` key
    not (A and B) or C                         `not`, `and`, `or`, parentheses

Operators and keywords must be separated by spaces; literals are single- or double-quoted text (codes
are text, so there are no numbers). A path operand is whatever runs up to the next space outside
brackets, parentheses and quotes, so FHIRPath such as
``Patient.identifier.where(system='urn:oid:2.16.156.10011.1.3').value exists`` works as is. For FHIR
a bare FHIRPath that yields the boolean ``false`` is false (``Bundle.entry.exists()``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError, PathSyntaxError
from engine.message_view import Source

Cond = Callable[[Source, Any], bool]
"""A compiled condition: (source, current field value) -> bool."""
Operand = Callable[[Source, Any], Any]
PathGetter = Callable[[Source], Any]
"""Reads one value from a source (see `engine.mapping.paths.compile_getter`)."""

_KEYWORDS = {"and", "or", "not", "in", "exists", "empty"}
_OPERATORS = ("==", "!=", "=~")


@dataclass
class _Token:
    kind: str  # "op", "kw", "str", "list", "lparen", "rparen", "operand"
    text: str
    pos: int
    items: tuple[str, ...] = ()


def _scan_operand(text: str, i: int) -> int:
    """End of a path operand starting at `i`: up to whitespace outside (), [] and quotes."""
    depth = 0
    quote = ""
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            if depth == 0:
                return i
            depth -= 1
        elif ch.isspace() and depth == 0:
            return i
        i += 1
    return i


def _string(text: str, i: int) -> tuple[str, int]:
    quote = text[i]
    end = text.find(quote, i + 1)
    if end < 0:
        raise ConfigError(f"column {i + 1}: unterminated string")
    return text[i + 1:end], end + 1


def tokenize(text: str) -> list[_Token]:
    """Split a condition into tokens (see the module docstring for the lexical rules)."""
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            out.append(_Token("lparen", ch, i))
            i += 1
        elif ch == ")":
            out.append(_Token("rparen", ch, i))
            i += 1
        elif ch in "'\"":
            value, j = _string(text, i)
            out.append(_Token("str", value, i))
            i = j
        elif text.startswith(_OPERATORS, i):
            out.append(_Token("op", text[i:i + 2], i))
            i += 2
        elif ch == "[":
            end = text.find("]", i)
            if end < 0:
                raise ConfigError(f"column {i + 1}: unterminated list")
            items: list[str] = []
            for part in re.finditer(r"\s*('([^']*)'|\"([^\"]*)\")\s*(,|$)", text[i + 1:end]):
                items.append(part.group(2) if part.group(2) is not None else part.group(3))
            if not items and text[i + 1:end].strip():
                raise ConfigError(f"column {i + 1}: a list holds quoted literals: ['a', 'b']")
            out.append(_Token("list", text[i:end + 1], i, tuple(items)))
            i = end + 1
        else:
            j = _scan_operand(text, i)
            word = text[i:j]
            out.append(_Token("kw" if word in _KEYWORDS else "operand", word, i))
            i = j
    return out


class _Parser:
    def __init__(self, text: str, compile_path: Callable[[str], PathGetter]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.compile_path = compile_path

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self) -> _Token:
        tok = self.peek()
        if tok is None:
            raise ConfigError("unexpected end of condition")
        self.pos += 1
        return tok

    def fail(self, tok: _Token | None, expected: str) -> ConfigError:
        where = f"column {tok.pos + 1}: found {tok.text!r}" if tok else "at the end"
        return ConfigError(f"{where}, expected {expected}")

    def parse(self) -> Cond:
        cond = self.or_()
        tok = self.peek()
        if tok is not None:
            raise self.fail(tok, "'and', 'or' or the end")
        return cond

    def or_(self) -> Cond:
        left = self.and_()
        while (tok := self.peek()) is not None and tok.kind == "kw" and tok.text == "or":
            self.pos += 1
            right = self.and_()
            left = (lambda a, b: lambda s, v: a(s, v) or b(s, v))(left, right)
        return left

    def and_(self) -> Cond:
        left = self.not_()
        while (tok := self.peek()) is not None and tok.kind == "kw" and tok.text == "and":
            self.pos += 1
            right = self.not_()
            left = (lambda a, b: lambda s, v: a(s, v) and b(s, v))(left, right)
        return left

    def not_(self) -> Cond:
        tok = self.peek()
        if tok is not None and tok.kind == "kw" and tok.text == "not":
            self.pos += 1
            inner = self.not_()
            return lambda s, v: not inner(s, v)
        return self.atom()

    def atom(self) -> Cond:
        tok = self.next()
        if tok.kind == "lparen":
            inner = self.or_()
            close = self.peek()
            if close is None or close.kind != "rparen":
                raise self.fail(close, "')'")
            self.pos += 1
            return inner
        left = self.operand(tok)
        nxt = self.peek()
        if nxt is None or nxt.kind in ("rparen",) or (nxt.kind == "kw" and nxt.text in ("and", "or")):
            return lambda s, v: truthy(left(s, v))
        self.pos += 1
        if nxt.kind == "kw" and nxt.text == "exists":
            return lambda s, v: truthy(left(s, v))
        if nxt.kind == "kw" and nxt.text == "empty":
            return lambda s, v: not truthy(left(s, v))
        if nxt.kind == "kw" and nxt.text == "in":
            lst = self.next()
            if lst.kind != "list":
                raise self.fail(lst, "a list such as ['A', 'B']")
            allowed = frozenset(lst.items)
            return lambda s, v: left(s, v) in allowed
        if nxt.kind != "op":
            raise self.fail(nxt, "==, !=, =~, in, exists, empty, and, or")
        rtok = self.next()
        if nxt.text == "=~":
            if rtok.kind != "str":
                raise self.fail(rtok, "a quoted regular expression")
            try:
                rx = re.compile(rtok.text)
            except re.error as exc:
                raise ConfigError(f"column {rtok.pos + 1}: bad regular expression: {exc}") from None
            return lambda s, v: (x := left(s, v)) is not None and rx.search(str(x)) is not None
        right = self.operand(rtok)
        if nxt.text == "==":
            return lambda s, v: left(s, v) == right(s, v)
        return lambda s, v: left(s, v) != right(s, v)

    def operand(self, tok: _Token) -> Operand:
        if tok.kind == "str":
            const = tok.text
            return lambda s, v: const
        if tok.kind != "operand":
            raise self.fail(tok, "a path, 'value', header.<key> or a quoted literal")
        if tok.text == "value":
            return lambda s, v: v
        if tok.text.startswith("header."):
            key = tok.text[len("header."):]
            return lambda s, v: s.header.get(key) or None
        try:
            getter = self.compile_path(tok.text)
        except PathSyntaxError as exc:
            raise ConfigError(str(exc)) from None
        return lambda s, v: getter(s)


def truthy(value: Any) -> bool:
    """Non-empty, and not the FHIR boolean ``false``."""
    if value is None or value == "" or value == [] or value is False:
        return False
    return bool(value != "false")


def compile_condition(text: str, compile_path: Callable[[str], PathGetter]) -> Cond:
    """Compile a condition; `compile_path` turns a path operand into a getter (raising PathSyntaxError).

    Raises ConfigError (without file:line: the route loader adds it) naming the column of the first problem.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("a condition must be a non-empty string")
    return _Parser(text, compile_path).parse()


__all__ = ["Cond", "compile_condition", "truthy"]
