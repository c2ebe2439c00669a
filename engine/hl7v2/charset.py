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
"""

from __future__ import annotations

import codecs

from engine.errors import CharsetError

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


def python_codec(charset: str) -> str:
    """The Python codec for a Table 0211 name or codec name; raise `LookupError` when unknown."""
    name = TABLE_0211.get(charset.strip().upper())
    if name is None:
        try:
            name = codecs.lookup(charset.strip()).name
        except ValueError:  # "embedded null character": unknown, like any other bad label (#16 fuzzing)
            raise LookupError(f"unknown encoding: {charset!r}") from None
    return name


def sniff_charset(raw: bytes) -> str | None:
    """MSH-18 (first repetition) from undecoded bytes, ``None`` when absent or not an MSH-led text.

    A batch (FHS/BHS first) is sniffed from its first MSH.
    """
    data = raw[3:] if raw.startswith(_BOM) else raw
    data = data.lstrip(b"\r\n\t ")
    if not data.startswith(b"MSH"):
        at = data.find(b"\rMSH")
        if at < 0:
            at = data.find(b"\nMSH")
        if at < 0:
            return None
        data = data[at + 1:]
    if len(data) < 8:
        return None
    end = min((i for i in (data.find(b"\r"), data.find(b"\n")) if i >= 0), default=len(data))
    fields = data[:end].split(data[3:4])
    if len(fields) < 18:
        return None
    value = fields[17].split(data[5:6], 1)[0].strip()  # MSH-18 is split element 17 (MSH-1 is the sep)
    if not value:
        return None
    return value.decode("ascii", errors="replace")


def decode(raw: bytes, charset: str | None) -> str:
    """Decode ``raw`` in the MSH-18 ``charset`` (UTF-8 when ``None``); raise `CharsetError` on failure."""
    label = charset or "UTF-8"
    try:
        codec = python_codec(label)
    except LookupError:
        raise CharsetError(f"unknown character set {label!r} in MSH-18 (HL7 table 0211)",
                           code="103", location="MSH^1^18") from None
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
