"""Why a text is not an HL7 v2 message: the checks `Er7Message.parse` runs and their reasons.

Reasons are written for the person reading the ACK / the dead-letter view (HL7 v2.5.1 §2.14.9 MSH,
§2.5.1 segment IDs, Table 0357 codes); they quote at most four characters of the payload, never
field values (patient data).
"""

from __future__ import annotations

import re

from engine.errors import Hl7ParseError

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""C0 controls other than TAB, LF, CR (and DEL): binary data or leftover MLLP framing."""
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def has_control_chars(text: str) -> bool:
    """Whether `CONTROL_CHARS` would find something in `text`, at a fraction of the regex's cost on
    non-ASCII text (~3x on Chinese messages): UTF-8 encodes code points below 0x80 as themselves and
    everything else as bytes >= 0x80, so the text has a control character exactly when its UTF-8
    bytes lose some to `bytes.translate`. Run the regex only to say where."""
    data = text.encode("utf-8", "surrogatepass")
    return len(data.translate(None, _CONTROL_BYTES)) != len(data)

MSH_FIELD_NAMES = {3: "sending application", 4: "sending facility", 5: "receiving application",
                   6: "receiving facility", 7: "date/time of message", 8: "security",
                   9: "message type", 10: "message control ID", 11: "processing ID", 12: "version ID"}
"""MSH-3..MSH-12 names, for 'MSH-9 message type missing'."""

VALID_NAMES: set[str] = set()
"""Segment IDs already checked (a small cache: senders use a few dozen IDs)."""


def check_name(name: str, i: int, line: str, fs: str) -> None:
    """Raise unless ``name`` is a segment ID: 3 ASCII upper-case letters/digits, a letter first."""
    if not (len(name) == 3 and name.isascii() and name.isalnum() and name[0].isalpha()
            and name.isupper()):
        raise bad_line(i, line, fs)
    if len(VALID_NAMES) < 1024:
        VALID_NAMES.add(name)


def bad_line(i: int, line: str, fs: str) -> Hl7ParseError:
    """The error for line ``i`` (0-based) that is not ``<segment ID><field separator>...``."""
    return Hl7ParseError(f"line {i + 1} does not start with a segment ID followed by {fs!r} "
                         f"(found {line[:4]!r})", code="100")


def not_msh_reason(text: str) -> str:
    """Say what the payload starts with instead of MSH (JSON, XML, a batch header, ...)."""
    if not text:
        return 'payload is empty, expected an HL7 v2 message starting with "MSH"'
    hint = {"{": " (looks like JSON)", "[": " (looks like JSON)", "<": " (looks like XML)"}.get(text[0], "")
    head = text[0] if hint else text[:3]
    if head in ("FHS", "BHS"):
        hint = " (a batch: split it with engine.hl7v2.batch.split_batch)"
    # The reason goes into MSA-3 / ERR-8 as it is: a quoted NUL or VT made the ACK unreadable (#16 fuzzing).
    head = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in head)
    return f'payload starts with "{head}"{hint}, expected "MSH"'
