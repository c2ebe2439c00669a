"""HL7 v2 encoding characters (MSH-1 / MSH-2) and escape sequences (HL7 v2.5.1 §2.5.4, §2.7).

The encoding characters are declared by each message, so nothing here assumes ``|^~\\&``.
Escape handling is split from parsing: values are stored raw and decoded only when read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from engine.errors import Hl7ParseError


@dataclass(frozen=True, slots=True)
class Encoding:
    """The separators of one message; ``subcomponent``/``truncation`` are ``""`` when not declared."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def msh2(self) -> str:
        """The MSH-2 text that declares these characters (HL7 v2.5.1 §2.14.9.2)."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    @staticmethod
    def from_msh(field_sep: str, msh2: str) -> Encoding:
        """Build from MSH-1 and MSH-2 text (cached); raise `Hl7ParseError` when they are unusable.

        MSH-2 has 3 characters (no subcomponent separator, older senders), 4 (usual) or 5 (v2.7
        truncation character, §2.5.5.2). All must be distinct, printable and not alphanumeric.
        """
        if not 3 <= len(msh2) <= 5:
            found = (f'"{msh2}"' if len(msh2) <= 5  # never the whole line: a wrong MSH-1 makes it MSH-2
                     else f"({len(msh2)} characters: is {field_sep!r} the field separator?)")
            raise Hl7ParseError(
                f"MSH-2 encoding characters {found} must be 3 to 5 characters (usually \"^~\\&\")",
                code="102", location="MSH^1^2")
        chars = field_sep + msh2
        for ch in chars:
            if ch.isalnum() or ch in " \r\n\t" or not ch.isprintable():
                raise Hl7ParseError(
                    f"encoding character {ch!r} in MSH-1/MSH-2 \"{chars}\" is not a usable separator",
                    code="102", location="MSH^1^2")
        if len(set(chars)) != len(chars):
            dup = next(c for c in chars if chars.count(c) > 1)
            raise Hl7ParseError(
                f"encoding character {dup!r} is declared twice in MSH-1/MSH-2 \"{chars}\"",
                code="102", location="MSH^1^2")
        return _encoding(field_sep, msh2)


@lru_cache(maxsize=64)
def _encoding(field_sep: str, msh2: str) -> Encoding:
    sub = msh2[3] if len(msh2) >= 4 else ""
    trunc = msh2[4] if len(msh2) == 5 else ""
    return Encoding(field_sep, msh2[0], msh2[1], msh2[2], sub, trunc)


@lru_cache(maxsize=64)
def _checked(field_sep: str, msh2: str) -> Encoding:
    return Encoding.from_msh(field_sep, msh2)


def encoding_of(field_sep: str, msh2: str) -> Encoding:
    """`Encoding.from_msh`, cached per distinct MSH-1/MSH-2 (the parse hot path)."""
    return _checked(field_sep, msh2)


DEFAULT_ENCODING = Encoding()
"""``|^~\\&``: what a reply uses when the received message could not be read."""


def unescape(value: str, enc: Encoding, charset: str = "latin-1") -> str:
    """Decode HL7 escape sequences (§2.7.1-2.7.4) in one raw value.

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\`` become the separators, ``\\.br\\`` a newline, ``\\Xhh..\\``
    the bytes decoded in ``charset`` (a Python codec; latin-1 when they do not decode there).
    Unknown or unterminated sequences (``\\H\\``, ``\\.sp\\``, ``\\Cxxyy\\``...) are kept literally.
    """
    esc = enc.escape
    if esc not in value:
        return value
    parts = value.split(esc)
    out = [parts[0]]
    last = len(parts) - 1
    i = 1
    while i <= last:
        seq = parts[i]
        if i == last:  # an escape character with no closing one: literal
            out.append(esc + seq)
            break
        out.append(_decode_one(seq, enc, charset))
        out.append(parts[i + 1])
        i += 2
    return "".join(out)


def _decode_one(seq: str, enc: Encoding, charset: str) -> str:
    """Decode the body of one ``\\...\\`` sequence, or return it literally with its delimiters."""
    simple = {"F": enc.field, "S": enc.component, "T": enc.subcomponent, "R": enc.repetition,
              "E": enc.escape, "P": enc.truncation, ".br": "\n"}.get(seq)
    if simple:  # "" (e.g. \T\ with no subcomponent separator declared) falls through as unknown
        return simple
    if len(seq) > 1 and seq[0] == "X" and len(seq) % 2 == 1:
        try:
            raw = bytes.fromhex(seq[1:])
        except ValueError:
            return enc.escape + seq + enc.escape
        try:
            return raw.decode(charset)
        except (UnicodeDecodeError, LookupError):
            return raw.decode("latin-1")
    return enc.escape + seq + enc.escape


def escape(value: str, enc: Encoding = DEFAULT_ENCODING) -> str:
    """Escape free text for an ER7 field (§2.7.1): separators become ``\\F\\`` etc., newlines ``\\.br\\``."""
    e = enc.escape
    out = value.replace(e, f"{e}E{e}")
    for ch, code in ((enc.field, "F"), (enc.component, "S"), (enc.repetition, "R"),
                     (enc.subcomponent, "T"), (enc.truncation, "P")):
        if ch:
            out = out.replace(ch, f"{e}{code}{e}")
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{e}.br{e}")
