"""Where HL7 v2 segments end: the one rule every reader here applies (HL7 v2.5.1 §2.8, §2.5.1).

The standard's segment terminator is CR (0x0D). What yonglink accepts, in this order:

1. Terminators at the very end of a text (CR, LF, CRLF, any number) only end it.
2. A text with a CR anywhere before that end uses CR as its terminator (CRLF counts as one); a lone LF
   is then field content (free text some senders leave unescaped), never a segment break.
3. A text with no CR before its end uses LF: senders that write LF-separated segments, with or
   without one final CR (the "only CR is the final one" case of issue #16).

`Er7Message.parse`, `split_batch`, the MSH readers of `engine.hl7v2.header` and `sniff_charset` all
go through these two functions, so no reader splits where another would not.
"""

from __future__ import annotations

_END = "\r\n\t "


def terminator(text: str) -> str:
    """``"\\r"`` or ``"\\n"``: the segment terminator of ``text`` under the rule above."""
    body = text.rstrip(_END)
    return "\r" if "\r" in body else "\n"


def split_segments(text: str) -> list[str]:
    """The segment texts of ``text`` (trailing terminators dropped; empty lines kept)."""
    body = text.rstrip(_END)
    if "\r" in body:
        return body.replace("\r\n", "\r").split("\r") if "\n" in body else body.split("\r")
    return body.split("\n")


def first_line_end(data: bytes) -> int:
    """Index where the first segment of raw ASCII-compatible bytes ends (its length when one line)."""
    cr = data.find(b"\r")
    if cr < 0:
        lf = data.find(b"\n")
        return len(data) if lf < 0 else lf
    lf = data.find(b"\n", 0, cr)
    if lf >= 0 and cr >= len(data.rstrip(b"\r\n\t ")):  # CRs only at the very end: LF separates segments
        return lf
    return cr  # CR is the terminator (an LF before it is field content; CRLF ends at its CR)
