"""The MSH header of a received message, read fast and checked (HL7 v2.5.1 §2.14.9).

What every inbound channel needs before it commits and acknowledges: the header fields, whether the
control id can be trusted as a dedupe key, and — for a negative ACK — whatever part of a broken
header can still be read.

`read_header` reads only the MSH line and checks that every line of the message starts with a segment
ID and the field separator (the checks `Er7Message.parse` runs, at a fraction of its cost); anything
unusual falls back to `Er7Message.parse`, whose `Hl7ParseError` gives the precise reason for the AR,
so both paths reject exactly the same texts.

Character sets whose second bytes include ``|`` (GB 18030, Big5, Shift JIS: see
`engine.hl7v2.charset.RAW_SPLIT_SAFE`) can make the decoded text and the raw bytes disagree on where
the MSH fields are: a legacy HIS that cuts MSH-4 at a byte limit leaves a lead byte before ``|``, and
decoding swallows the separator (MSH-10 then reads as MSH-11). When the two readings disagree, the
one whose MSH-11 is a processing ID (Table 0103) and MSH-12 a version ID (Table 0104) wins; when
neither is plausible the header is not `trusted` and its control id is never used as a dedupe key.
"""

from __future__ import annotations

import functools
import re

from engine.errors import Hl7ParseError
from engine.hl7v2.charset import RAW_SPLIT_SAFE
from engine.hl7v2.encoding import Encoding, encoding_of, unescape
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.lines import first_line_end, split_segments

PROCESSING_IDS = frozenset({"D", "P", "T"})
"""HL7 Table 0103 processing IDs (MSH-11.1)."""
_VERSION_ID = re.compile(r"2\.\d")
"""HL7 Table 0104 version IDs are 2.1 .. 2.8.2 (MSH-12.1)."""
MAX_CONTROL_ID = 199
"""MSH-10 is ST(20) in v2.5.1 and 199 from v2.7 (§2.14.9.10): longer is not a control id."""

_ENCODINGS: dict[str, Encoding] = {}
"""MSH-1+MSH-2 text → validated `Encoding` (a handful of distinct values per deployment)."""
_WIDE = ("utf-16", "utf-32", "utf_16", "utf_32")
"""Codecs whose bytes are not ASCII-compatible: byte-level checks do not apply."""
_TEXT_BYTES = bytes([0x09, 0x0A, 0x0D]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
"""Bytes allowed in ER7 text in an ASCII-compatible charset; the rest are C0 controls and DEL."""


class MshHeader:
    """The MSH fields of one received message, raw (escapes not decoded) except where a property says so.

    ``msh[n - 1]`` is MSH-n for n >= 2 (``msh[0]`` is ``MSH``), padded to MSH-19. `trusted` is False
    when the fields could not be located for certain (see the module docstring); `note` says why
    or how the header was repaired.
    """

    __slots__ = ("codec", "enc", "msh", "note", "text", "trusted", "width")

    def __init__(self, text: str, enc: Encoding, msh: list[str], codec: str, *, trusted: bool = True,
                 note: str | None = None) -> None:
        self.width = len(msh)
        if len(msh) < 19:
            msh = msh + [""] * (19 - len(msh))
        self.text, self.enc, self.msh, self.codec = text, enc, msh, codec
        self.trusted, self.note = trusted, note

    @classmethod
    def from_er7(cls, msg: Er7Message, codec: str = "utf-8") -> MshHeader:
        """The header of a fully parsed message."""
        return cls(msg.text, msg.encoding, msg.msh.raw.split(msg.encoding.field), codec)

    def field(self, n: int) -> str:
        """Raw MSH-n (n >= 3; MSH-1/2 are the encoding characters)."""
        return self.msh[n - 1] if n - 1 < len(self.msh) else ""

    def first(self, n: int) -> str:
        """MSH-n first repetition, first component, escapes decoded; the HL7 null ``""`` reads as ""."""
        enc = self.enc
        raw = self.msh[n - 1]
        if enc.component in raw or enc.repetition in raw:
            raw = raw.split(enc.repetition, 1)[0].split(enc.component, 1)[0]
        if raw == '""':
            return ""
        return unescape(raw, enc, self.codec) if enc.escape in raw else raw

    @property
    def control_id(self) -> str:
        """MSH-10, escapes decoded."""
        raw = self.msh[9]
        return unescape(raw, self.enc, self.codec) if self.enc.escape in raw else raw

    @property
    def message_type(self) -> str:
        """``MSH-9.1^MSH-9.2`` (``ADT^A01``), or MSH-9.1 alone."""
        parts = self.msh[8].split(self.enc.repetition, 1)[0].split(self.enc.component, 2)
        return f"{parts[0]}^{parts[1]}" if len(parts) > 1 and parts[1] else parts[0]

    @property
    def accept_ack_type(self) -> str:
        """MSH-15 (Table 0155), upper case; empty means original acknowledgment mode (§2.9.2)."""
        return self.first(15).upper()


def plausible_control_id(value: str) -> bool:
    """Whether MSH-10 can identify a message: present, not the HL7 null, printable, not too long."""
    return (0 < len(value) <= MAX_CONTROL_ID and value != '""' and value.isprintable()
            and "\ufffd" not in value)


def read_header(text: str, raw: bytes, codec: str, *, single: bool = False) -> MshHeader:
    """Read and check the MSH of ``text`` (decoded from ``raw`` with ``codec``).

    Raise `Hl7ParseError` when the text is not an HL7 v2 message. ``single=True``: the caller already
    checked that "MSH" occurs only at the start.
    """
    wide = codec.startswith(_WIDE)
    second_msh = -1 if single else (text.find("MSH", 3) if wide else raw.find(b"MSH", 3))
    hdr = None
    if text.startswith("MSH") and len(text) >= 8 and second_msh < 0:
        fs = text[3]
        body = text.rstrip("\r\n\t ")
        term = "\r" if "\r" in body else "\n"  # engine/hl7v2/lines.py
        end = body.find(term)
        msh = (body if end < 0 else body[:end]).split(fs)
        enc = _ENCODINGS.get(fs + msh[1]) if len(msh) > 1 else None
        if (enc is not None and len(msh) >= 12 and msh[8] and _no_control(text, raw, wide)
                and (end < 0 or _bad_line(fs, term).search(body, end) is None)):
            hdr = MshHeader(text, enc, msh, codec)
    if hdr is None:
        msg = Er7Message.parse(text)  # raises the precise Hl7ParseError, or the header is fine after all
        enc = msg.encoding
        _ENCODINGS[enc.field + enc.msh2] = enc
        hdr = MshHeader(msg.text, enc, msg.msh.raw.split(enc.field), codec)
    if wide or codec in RAW_SPLIT_SAFE:
        return hdr
    return _checked_against_raw(hdr, raw, codec)


@functools.lru_cache(maxsize=64)
def _bad_line(fs: str, term: str) -> re.Pattern[str]:
    """Finds a terminator not followed by ``<segment ID><fs>``, ``<segment ID>`` alone or an empty line
    (segment IDs: a letter, then two letters or digits; CRLF counts as CR). Anything it finds makes
    `Er7Message.parse` give the precise reason."""
    t, f = re.escape(term), re.escape(fs)
    return re.compile(rf"{t}\n?(?![A-Z][A-Z0-9]{{2}}(?:{f}|{t}|\r?\n?$)|{t}|$)")


def _plausible_tail(msh: list[str], enc: Encoding) -> bool:
    """MSH-11 a Table 0103 processing ID and MSH-12 a Table 0104 version ID."""
    if len(msh) < 12:
        return False
    proc = msh[10].split(enc.component, 1)[0]
    return proc in PROCESSING_IDS and _VERSION_ID.match(msh[11]) is not None


def _checked_against_raw(hdr: MshHeader, raw: bytes, codec: str) -> MshHeader:
    """Compare the text's MSH fields with a split of the raw bytes (see the module docstring)."""
    start = raw.find(b"MSH")
    line = raw[start:]
    line = line[:first_line_end(line)]
    if line.isascii():
        return hdr
    raw_fields = line.split(hdr.enc.field.encode("ascii", errors="replace"))
    if len(raw_fields) == hdr.width:
        return hdr
    if _plausible_tail(hdr.msh[:hdr.width], hdr.enc):
        return hdr
    fields = [f.decode(codec, errors="replace") for f in raw_fields]
    if _plausible_tail(fields, hdr.enc):
        return MshHeader(hdr.text, hdr.enc, fields, codec,
                         note=f"MSH read from the raw bytes: a {codec} character is cut before a field "
                              "separator")
    return MshHeader(hdr.text, hdr.enc, hdr.msh[:hdr.width], codec, trusted=False,
                     note=f"MSH fields ambiguous in {codec}: control id not used for duplicate detection")


def best_effort_header(raw: bytes, codec: str) -> MshHeader | None:
    """Whatever MSH can be read from input that is otherwise rejected (for MSA-2, the swapped sender,
    MSH-11 as sent, and the stored row's control id). Only MSH-1/MSH-2 must be usable; None otherwise.
    """
    if codec.startswith(_WIDE):
        try:
            text = raw.decode(codec, errors="replace")
        except LookupError:
            return None
        start = text.find("MSH")
        candidates = [(split_segments(text[start:])[0], codec)] if start >= 0 else []
    else:
        start = raw.find(b"MSH")
        if start < 0:
            return None
        line = raw[start:]
        line = line[:first_line_end(line)]
        candidates = []
        for attempt in (codec, "latin-1"):
            try:
                candidates.append((line.decode(attempt), attempt))
                break
            except (UnicodeDecodeError, LookupError):
                continue
    for text, used in candidates:
        if len(text) < 8:
            return None
        fs = text[3]
        fields = text.split(fs)
        try:
            enc = encoding_of(fs, fields[1])
        except Hl7ParseError:
            return None
        return MshHeader(text, enc, fields, used, trusted=False)
    return None


def _no_control(text: str, raw: bytes, wide: bool) -> bool:
    """True when the message has no control characters but TAB/LF/CR (binary data is not ER7).

    In ASCII-compatible charsets bytes below 0x20 are never part of a multi-byte character, so the raw
    bytes are checked with one C-speed `translate`.
    """
    if wide:
        return not any((ch < " " and ch not in "\t\n\r") or ch == "\x7f" for ch in text)
    return not raw.translate(None, _TEXT_BYTES)
