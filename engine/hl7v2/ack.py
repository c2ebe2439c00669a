"""Build and read HL7 v2 acknowledgments (HL7 v2.5.1 §2.9 / §2.14: MSH, MSA, ERR).

Codes: MSA-1 from Table 0008 (AA/AE/AR original mode, CA/CE/CR enhanced-mode commit acks);
ERR-3 from Table 0357 (message error condition codes); ERR-4 from Table 0516 (E, W, I, F);
MSH-15 accept-acknowledgment type from Table 0155 (AL, NE, ER, SU).
"""

from __future__ import annotations

from datetime import datetime

from engine.errors import Hl7ParseError
from engine.hl7v2.encoding import DEFAULT_ENCODING, escape
from engine.hl7v2.er7 import Er7Message

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


def build_ack(msg: Er7Message | None, code: str, text: str = "", *, error_code: str | None = None,
              severity: str = "E", location: str | None = None, control_id: str,
              now: datetime | None = None) -> str:
    """Return the ER7 text (segments joined by CR, trailing CR) of an ACK for ``msg``.

    MSH-3/4 and MSH-5/6 are swapped from the received message, MSH-11/12 and the encoding characters
    echoed (defaults ``P``, ``2.5.1``, ``|^~\\&`` when ``msg`` is ``None``, i.e. unparseable input).
    MSH-18 is echoed too: the transport must encode the ACK in that character set.
    For AE/AR/CE/CR an ERR segment carries ERR-2 ``location`` (``MSH^1^9``, written with ``^`` and
    translated to the message's component separator), ERR-3 ``error_code`` (Table 0357, default 207),
    ERR-4 ``severity`` and ERR-8 ``text``.
    """
    if code not in ACK_CODES:
        raise ValueError(f"ACK code {code!r} is not in HL7 table 0008 ({', '.join(sorted(ACK_CODES))})")
    enc = msg.encoding if msg is not None else DEFAULT_ENCODING
    fs, cs = enc.field, enc.component
    stamp = (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S")
    if msg is not None:
        fields = msg.msh.fields
        raw = [fields[n] if n < len(fields) else "" for n in range(19)]
        sender, receiver = raw[5:7], raw[3:5]
        trigger, acked = msg.msh.raw_value(9, 1, 2), raw[10]
        proc, version, charset = raw[11] or DEFAULT_PROCESSING_ID, raw[12] or DEFAULT_VERSION, raw[18]
    else:
        sender, receiver = ["", ""], ["", ""]
        trigger, acked, proc, version, charset = "", "", DEFAULT_PROCESSING_ID, DEFAULT_VERSION, ""
    msg_type = cs.join(("ACK", trigger, "ACK")) if trigger else "ACK"
    msh = ["MSH", enc.msh2, *sender, *receiver, stamp, "", msg_type, escape(control_id, enc), proc,
           version]
    if charset:
        msh += ["", "", "", "", "", charset]
    segments = [fs.join(msh), fs.join(["MSA", code, acked, escape(text, enc)])]
    if code not in SUCCESS_CODES:
        err_code = error_code or "207"
        err3 = cs.join((err_code, TABLE_0357.get(err_code, ""), "HL70357"))
        loc = (location or "").replace("^", cs)
        segments.append(fs.join(["ERR", "", loc, err3, severity, "", "", "", escape(text, enc)]))
    return "\r".join(segments) + "\r"


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


__all__ = ["TABLE_0357", "build_ack", "needs_ack", "parse_ack", "wants_ack"]
