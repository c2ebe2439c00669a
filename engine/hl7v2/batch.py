"""Split HL7 v2 batch files into single messages (HL7 v2.5.1 §2.10.3, batch protocol).

A batch is ``[FHS] { [BHS] { MSH ... } [BTS] } [FTS]``; senders also drop several bare messages into
one file without any envelope. `split_batch` returns each message's text without the envelope
segments, keeping the original segment terminator. A text with one MSH is returned unchanged.
"""

from __future__ import annotations

from engine.errors import Hl7ParseError
from engine.hl7v2.lines import split_segments, terminator

ENVELOPE_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})


def split_batch(text: str) -> list[str]:
    """Return the messages in ``text`` (one item for a plain message)."""
    stripped = text.lstrip("\ufeff\r\n\t ")
    if stripped.startswith("MSH") and stripped.count("MSH", 3) == 0:
        return [text]
    # Segment terminators as engine/hl7v2/lines.py defines them for every reader (HL7 v2.5.1 §2.8)
    sep = terminator(stripped)
    if sep == "\r" and "\r\n" in stripped:
        sep = "\r\n"
    lines = split_segments(stripped)
    messages: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        name = line[:3]
        if name in ENVELOPE_SEGMENTS:
            continue
        if name == "MSH":
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            shown = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in name)  # for MSA-3
            raise Hl7ParseError(f'batch has a "{shown}" segment before any MSH', code="100")
    if not messages:
        raise Hl7ParseError("batch contains no MSH message", code="100")
    return [sep.join(lines) + sep for lines in messages]
