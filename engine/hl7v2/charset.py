"""Character sets of inbound HL7 v2 bytes: MSH-18 sniffing and decoding (HL7 v2.5.1 §2.14.9.18, Table 0211).

MSH is ASCII in every character set HL7 allows, so `sniff_charset` reads MSH-18 from the raw bytes
before anything is decoded. `decode` maps Table 0211 names to Python codecs:

=====================  ===========  ==================================================================
Table 0211 name        codec        note
=====================  ===========  ==================================================================
ASCII / ISO IR6        ascii
8859/1 .. 8859/15      iso8859-N    ``8859/1`` is latin-1
GB 18030-2000          gb18030
UNICODE UTF-8          utf-8
UNICODE                utf-8        strictly UCS-2; in practice senders mean UTF-8 on the wire
UNICODE UTF-16 / -32   utf-16/-32
BIG-5, KS X 1001       big5, euc_kr
ISO IR87 / ISO IR159   iso2022_jp   JIS X 0208 / 0212
GB2312, GBK            gb18030      not Table 0211, but common from Chinese HIS; gb18030 is a superset
=====================  ===========  ==================================================================

Any other value is tried as a Python codec name (``utf-8``, ``cp936``). No charset means UTF-8.

Only text encodings on `TEXT_CODECS` are accepted: a label naming a bytes-to-bytes codec (``base64``,
``zlib``, ``hex``...), ``idna``, ``punycode``, ``undefined`` or containing a NUL raises
`UnsupportedCharsetError` (an AR, never a traceback). A label that is neither a Table 0211 name nor a
Python codec raises plain `LookupError`: the inbound rules (`engine.hl7v2.inbound`) then fall back to
UTF-8 when the bytes decode, and note it on the message.

MSH-18 is read from the raw bytes, before anything is decoded. Splitting raw bytes on ``|`` is exact in
UTF-8, ASCII, ISO 8859 and EUC (`RAW_SPLIT_SAFE`: no byte below 0x80 inside a multi-byte character).
In GB 18030, GBK, Big5 and Shift JIS the second byte of a character may be 0x7C (``|``; 116 CJK
characters in GB 18030, e.g. 東 = 96 7C), so `sniff_charset` checks such a header by decoding it.
"""

from __future__ import annotations

import codecs
import functools

from engine.errors import CharsetError, UnsupportedCharsetError
from engine.hl7v2.lines import first_line_end

TABLE_0211: dict[str, str] = {
    "ASCII": "ascii", "ISO IR6": "ascii", "ISO IR100": "latin-1",
    **{f"8859/{n}": f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 15)},
    "8859/1": "latin-1",
    "GB 18030-2000": "gb18030", "GB18030": "gb18030", "GB2312": "gb18030", "GBK": "gb18030",
    "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8", "UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16", "UNICODE UTF-32": "utf-32",
    "BIG-5": "big5", "KS X 1001": "euc_kr", "ISO IR87": "iso2022_jp", "ISO IR159": "iso2022_jp_1",
    "ISO IR14": "shift_jis", "CNS 11643-1992": "big5",
}
_BOM = b"\xef\xbb\xbf"

_TEXT_CODEC_NAMES = (
    "ascii", "latin-1", *(f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
    "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be",
    "gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "shift_jis", "cp932", "euc_jp", "euc_kr",
    "cp949", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2", "iso2022_kr",
    *(f"cp{n}" for n in range(1250, 1259)), "koi8-r", "koi8-u",
)
TEXT_CODECS = frozenset(codecs.lookup(n).name for n in _TEXT_CODEC_NAMES)
"""Python codecs (normalised names) an inbound message may be decoded with: Table 0211's character
sets and the common national ones. Anything else is refused (see the module docstring)."""
RAW_SPLIT_SAFE = frozenset(codecs.lookup(n).name for n in (
    "ascii", "latin-1", "utf-8", "utf-8-sig", "euc_jp", "euc_kr", "gb2312", "koi8-r", "koi8-u",
    *(f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)),
    *(f"cp{n}" for n in range(1250, 1259))))
"""Codecs in which a byte below 0x80 is always that ASCII character: the raw bytes split on a
separator exactly as the decoded text does."""
_UNSAFE_CANDIDATES = ("gb18030", "big5", "shift_jis")
"""Where a raw split may mislead (second bytes 0x40-0x7E): tried when the raw MSH-18 is unusable."""


def python_codec(charset: str) -> str:
    """The Python codec for a Table 0211 name or codec name.

    Raise `UnsupportedCharsetError` (a `LookupError` too) for a name that is not a text encoding on
    `TEXT_CODECS`, plain `LookupError` when the name is unknown.
    """
    label = charset.strip()
    if "\x00" in label or not label.isprintable():
        raise UnsupportedCharsetError(f"character set name {printable_label(label)} contains control "
                                      "characters", code="103", location="MSH^1^18")
    name = TABLE_0211.get(label.upper())
    if name is None:
        try:
            name = codecs.lookup(label).name
        except ValueError:
            raise LookupError(label) from None
    if codecs.lookup(name).name not in TEXT_CODECS:
        raise UnsupportedCharsetError(
            f"character set {printable_label(label)} is not a text encoding yonglink accepts "
            "(HL7 table 0211)", code="103", location="MSH^1^18")
    return name


def printable_label(label: str) -> str:
    """A charset label as error texts quote it: at most 32 characters, control characters shown."""
    shown = "".join(ch if ch.isprintable() else f"<0x{ord(ch):02X}>" for ch in label[:32])
    return repr(shown + ("..." if len(label) > 32 else ""))


@functools.lru_cache(maxsize=256)
def known_codec(label: str) -> str | None:
    """`python_codec`, None instead of an error (for sniffing; cached: a handful of labels per site)."""
    try:
        return python_codec(label)
    except LookupError:
        return None


def sniff_charset(raw: bytes) -> str | None:
    """MSH-18 (first repetition) from undecoded bytes, ``None`` when absent or not an MSH-led text.

    A batch (FHS/BHS first) is sniffed from its first MSH. When the MSH line has bytes >= 0x80 and the
    raw split does not give a usable label, the line is decoded in each codec of `_UNSAFE_CANDIDATES`
    and that reading's MSH-18 is taken when it names the same codec (the label is self-consistent).
    """
    if not raw.startswith(b"MSH"):
        data = raw[3:] if raw.startswith(_BOM) else raw
        data = data.lstrip(b"\r\n\t ")
        if not data.startswith(b"MSH"):
            at = data.find(b"\rMSH")
            if at < 0:
                at = data.find(b"\nMSH")
            if at < 0:
                return None
            data = data[at + 1:]
    else:
        data = raw
    if len(data) < 8:
        return None
    line = data[:first_line_end(data)]
    if len(line) < 8:  # "MSH" then CR: no field separator to split on (found by tests/fuzz)
        return None
    label = _msh18(line.split(line[3:4], 18), line[5:6])
    if line.isascii() or (label is not None and known_codec(label) is not None):
        return label
    for codec in _UNSAFE_CANDIDATES:
        try:
            text = line.decode(codec)
        except UnicodeDecodeError:
            continue
        fields = text.split(text[3], 18)
        if len(fields) < 18:
            continue
        found = fields[17].split(text[5], 1)[0].strip()
        if found and known_codec(found) == codec:
            return found
    return label


def _msh18(fields: list[bytes], component: bytes) -> str | None:
    if len(fields) < 18:
        return None
    value = fields[17].split(component, 1)[0].strip()  # MSH-18 is split element 17 (MSH-1 is the sep)
    return value.decode("ascii", errors="replace") if value else None


_DECODERS: dict[str, str] = {}
"""Label -> codec for the labels `decode` has accepted (a handful per site; `python_codec` costs two
codec lookups)."""


def decode(raw: bytes, charset: str | None) -> str:
    """Decode ``raw`` in the MSH-18 ``charset`` (UTF-8 when ``None``); raise `CharsetError` on failure."""
    label = charset or "UTF-8"
    codec = _DECODERS.get(label)
    if codec is None:
        try:
            codec = python_codec(label)
        except UnsupportedCharsetError:
            raise
        except LookupError:
            raise CharsetError(f"unknown character set {printable_label(label)} in MSH-18 (HL7 table 0211)",
                               code="103", location="MSH^1^18") from None
        if len(_DECODERS) < 256:
            _DECODERS[label] = codec
    data = raw[3:] if codec == "utf-8" and raw.startswith(_BOM) else raw
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(raw) - len(data))
        bad = raw[offset]
        raise CharsetError(
            f"byte 0x{bad:02X} at offset {offset} is not valid {_pretty(label, codec)}",
            code="102", location="MSH^1^18") from None


def _pretty(label: str, codec: str) -> str:
    return "UTF-8" if codec == "utf-8" else f"{label} ({codec})"
