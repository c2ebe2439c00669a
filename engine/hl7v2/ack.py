"""Build and read HL7 v2 acknowledgments (HL7 v2.5.1 §2.9 / §2.14: MSH, MSA, ERR).

Codes: MSA-1 from Table 0008 (AA/AE/AR original mode, CA/CE/CR enhanced-mode commit acks);
ERR-3 from Table 0357 (message error condition codes); ERR-4 from Table 0516 (E, W, I, F);
MSH-15 accept-acknowledgment type from Table 0155 (AL, NE, ER, SU).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from engine.errors import Hl7ParseError
from engine.hl7v2.charset import known_codec
from engine.hl7v2.encoding import DEFAULT_ENCODING, Encoding, escape
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.header import MshHeader

ACK_CODES = frozenset({"AA", "AE", "AR", "CA", "CE", "CR"})
"""HL7 Table 0008 acknowledgment codes."""
SUCCESS_CODES = frozenset({"AA", "CA"})

TABLE_0357: dict[str, str] = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}
"""HL7 Table 0357 message error condition codes (v2.5.1)."""

DEFAULT_PROCESSING_ID = "P"
DEFAULT_VERSION = "2.5.1"

MSA3_MAX = 80
"""MSA-3 text message is ST(80) in v2.5 (§2.14.8.3): a longer reason is cut, the full one is in ERR-8."""
ERR8_MAX = 200
"""Characters of one error's text in its ERR-8 (user message) before it is cut with "...". """
MAX_ERR_SEGMENTS = 10
"""ERR segments in one ACK; further errors are counted in the last one's text."""
MAX_ECHOED_FIELD = 227
"""Characters of a received MSH-3..6/11/12/18 echoed into the ACK header (HD is 227 in v2.5.1)."""
MAX_ACK_BYTES = 4096
"""Bound on a negative ACK's size (counted in UTF-8, at least its size in GB 18030): ERR segments past
it are folded into "and N more errors". With the caps above the header and MSA take at most ~2.3 KB,
so a sender that reads 4 KB per ACK (python-hl7's mllp_send) never reads half of one."""


def build_ack(msg: MshHeader | Er7Message | None, code: str, text: str = "", *,
              error_code: str | None = None, severity: str = "E", location: str | None = None,
              control_id: str, now: datetime | None = None, errors: Sequence[str] | None = None) -> str:
    """Return the ER7 text (segments joined by CR, trailing CR) of an ACK for ``msg``.

    MSH-3/4 and MSH-5/6 are swapped from the received message, MSH-11/12 and the encoding characters
    echoed (defaults ``P``, ``2.5.1``, ``|^~\\&`` when ``msg`` is ``None``, i.e. unreadable input).
    MSH-18 is echoed when it names a character set we accept: the transport encodes the ACK in it.
    MSA-3 carries ``text`` (at most `MSA3_MAX` characters). For AE/AR/CE/CR there is one ERR segment
    per error (``errors``, else ``[text]``; at most `MAX_ERR_SEGMENTS`): ERR-2 ``location`` (``MSH^1^9``,
    written with ``^``), ERR-3 ``error_code`` (Table 0357, default 207), ERR-4 ``severity``, ERR-8 the
    error's text (at most `ERR8_MAX` characters). The whole ACK stays under `MAX_ACK_BYTES`.
    """
    if code not in ACK_CODES:
        raise ValueError(f"ACK code {code!r} is not in HL7 table 0008 ({', '.join(sorted(ACK_CODES))})")
    hdr = MshHeader.from_er7(msg) if isinstance(msg, Er7Message) else msg
    enc = hdr.enc if hdr is not None else DEFAULT_ENCODING
    fs, cs = enc.field, enc.component
    stamp = (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S")
    if hdr is not None:
        # m[n - 1] is MSH-n; control characters are dropped from what is echoed: a NUL in MSH-10 made the
        # AR itself unreadable to every parser (found by tests/fuzz/test_fuzz_er7.py)
        m = [_printable(f[:MAX_ECHOED_FIELD]) for f in hdr.msh]
        sender, receiver = m[4:6], m[2:4]
        trigger = m[8].split(enc.repetition, 1)[0].split(cs, 2)
        event = trigger[1] if len(trigger) > 1 else ""
        acked, proc, version = m[9], m[10] or DEFAULT_PROCESSING_ID, m[11] or DEFAULT_VERSION
        charset = m[17] if known_codec(hdr.first(18) or "UTF-8") is not None else ""
    else:
        sender, receiver = ["", ""], ["", ""]
        event, acked, proc, version, charset = "", "", DEFAULT_PROCESSING_ID, DEFAULT_VERSION, ""
    msg_type = cs.join(("ACK", event, "ACK")) if event else "ACK"
    msh = ["MSH", enc.msh2, *sender, *receiver, stamp, "", msg_type, escape(control_id, enc), proc,
           version]
    if charset:
        msh += ["", "", "", "", "", charset]
    segments = [fs.join(msh), fs.join(["MSA", code, acked, _fit(text, enc, MSA3_MAX)])]
    if code not in SUCCESS_CODES:
        err_code = error_code or "207"
        err3 = cs.join((err_code, TABLE_0357.get(err_code, ""), "HL70357"))
        loc = (location or "").replace("^", cs)
        real = list(errors) if errors else [text]

        def err(one: str) -> str:
            return fs.join(["ERR", "", loc, err3, severity, "", "", "", _fit(one, enc, ERR8_MAX)])

        size = sum(_size(seg) + 1 for seg in segments)
        for keep in range(min(len(real), MAX_ERR_SEGMENTS), 0, -1):
            if keep == len(real):
                errs = [err(one) for one in real]
            else:  # the last ERR counts the errors left out
                rest = len(real) - keep + 1
                errs = [err(one) for one in real[:keep - 1]] + [err(f"and {rest} more errors")]
            if size + sum(_size(e) + 1 for e in errs) <= MAX_ACK_BYTES:
                break
        segments += errs
    return "\r".join(segments) + "\r"


def _size(segment: str) -> int:
    """Bytes of ``segment`` in UTF-8: at least what it takes in GB 18030 or any single-byte charset."""
    return len(segment.encode("utf-8", "surrogatepass"))


def _fit(text: str, enc: Encoding, limit: int) -> str:
    """``text`` escaped for ER7, cut (ending in "...") so that the escaped value has at most ``limit``
    characters and no escape sequence is cut in half."""
    out = escape(text, enc)
    if len(out) <= limit:
        return out
    keep = limit - 3
    while keep > 0:
        out = escape(text[:keep], enc) + "..."
        if len(out) <= limit:
            return out
        keep -= max(1, len(out) - limit)
    return "..."


class AckWriter:
    """Formats acknowledgments for one channel: new MSH-10 per ACK, timestamp cached per second.

    `positive` is the hot path (AA/CA after each commit): byte-identical to `build_ack` (a test checks)
    and ~10x cheaper, since it formats the header fields already read. Negative ACKs go through
    `build_ack`.
    """

    __slots__ = ("_count", "_prefix", "_second", "_stamp")

    def __init__(self, prefix: str) -> None:
        self._prefix = "".join(ch for ch in prefix if ch.isascii() and (ch.isalnum() or ch == "-"))
        self._count = 0
        self._second = -1
        self._stamp = ""

    def next_control_id(self) -> str:
        self._count += 1
        return f"{self._prefix}{self._count}"

    def stamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second).astimezone().strftime("%Y%m%d%H%M%S")
        return self._stamp

    def positive(self, hdr: MshHeader, code: str, text: str = "") -> str:
        """AA/CA: what `build_ack(hdr, code, text)` returns."""
        if code not in SUCCESS_CODES:
            raise ValueError(f"{code} is not a positive acknowledgment")
        m = hdr.msh
        if max(len(m[2]), len(m[3]), len(m[4]), len(m[5]), len(m[8]), len(m[9]), len(m[10]), len(m[11]),
               len(m[17])) > MAX_ECHOED_FIELD or (m[17] and known_codec(hdr.first(18)) is None):
            return build_ack(hdr, code, text, control_id=self.next_control_id(),
                             now=datetime.fromtimestamp(time.time()).astimezone())
        enc = hdr.enc
        fs, cs = enc.field, enc.component
        trigger = m[8].split(enc.repetition, 1)[0].split(cs, 2)
        msg_type = f"ACK{cs}{trigger[1]}{cs}ACK" if len(trigger) > 1 and trigger[1] else "ACK"
        self._count += 1  # the new MSH-10: prefix is alphanumeric + "-", nothing to escape
        msh = fs.join(("MSH", enc.msh2, m[4], m[5], m[2], m[3], self.stamp(), "", msg_type,
                       f"{self._prefix}{self._count}", m[10] or "P", m[11] or "2.5.1"))
        charset = m[17]
        if charset:
            msh += fs * 6 + charset
        text = _fit(text, enc, MSA3_MAX) if text else ""
        return f"{msh}\rMSA{fs}{code}{fs}{m[9]}{fs}{text}\r"

    def negative(self, hdr: MshHeader | None, code: str, text: str, *, error_code: str,
                 location: str | None = None, errors: Sequence[str] | None = None) -> str:
        """AE/AR/CE/CR with one ERR segment per error (ERR-2 location, ERR-3 Table 0357, ERR-4 E, ERR-8)."""
        return build_ack(hdr, code, printable(text), error_code=error_code, location=location,
                         control_id=self.next_control_id(), now=datetime.now().astimezone(),
                         errors=[printable(e) for e in errors] if errors else None)


def printable(text: str) -> str:
    """``text`` with control characters shown as ``<0x0B>``: a reason may quote binary input, and a raw
    0x0B or 0x1C in an ACK would break its MLLP frame."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"<0x{ord(ch):02X}>" for ch in text)


def parse_ack(text: str) -> tuple[str, str, str]:
    """Read an ACK: ``(MSA-1 code, MSA-2 acknowledged control id, text)``.

    The text is MSA-3, else ERR-8, else ERR-3.2. Raise `Hl7ParseError` when there is no MSA or
    MSA-1 is not a Table 0008 code.
    """
    msg = Er7Message.parse(text)
    if not msg.segments("MSA"):
        raise Hl7ParseError(f"reply {msg.message_type or 'message'} has no MSA segment", code="100",
                            location="MSA")
    code = (msg.get("MSA-1") or "").upper()
    if code not in ACK_CODES:
        raise Hl7ParseError(f"MSA-1 {code!r} is not an acknowledgment code (table 0008)", code="103",
                            location="MSA^1^1")
    reason = msg.get("MSA-3") or msg.get("ERR-8") or msg.get("ERR-3.2") or ""
    return code, msg.get("MSA-2") or "", reason


def needs_ack(msg: Er7Message, code: str) -> bool:
    """Whether to send an acknowledgment with ``code`` for ``msg`` (§2.9.3, Table 0155 on MSH-15).

    Empty MSH-15 is original mode: always acknowledge. AL always, NE never, ER only when ``code``
    is an error (not AA/CA), SU only on success. The engine acknowledges on receipt (commit level),
    so MSH-15 governs even for AA/AE/AR codes; MSH-16 belongs to the receiving application.
    """
    return wants_ack(msg.accept_ack_type.upper(), code)


def wants_ack(mode: str, code: str) -> bool:
    """`needs_ack` on an MSH-15 value already read (upper case), for callers that read MSH alone."""
    if mode in ("", "AL"):
        return True
    if mode == "NE":
        return False
    if mode == "ER":
        return code not in SUCCESS_CODES
    if mode == "SU":
        return code in SUCCESS_CODES
    return True  # an unknown value: acknowledging is the safe side


__all__ = ["TABLE_0357", "AckWriter", "build_ack", "needs_ack", "parse_ack", "printable", "wants_ack"]


def _printable(field: str) -> str:
    """An echoed header field without control characters (their escapes would not survive either)."""
    return field if field.isprintable() else "".join(ch for ch in field if ch.isprintable())
