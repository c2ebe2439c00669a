"""The inbound HL7 v2 rules, one set for every channel (MLLP, HTTP, AMQP): from received bytes to the
`InboundMessage`s to commit, or to the reason the input is rejected.

Why here and not in `channels/`: these are HL7 v2 rules, not transport ones; channels only add what
their transport says (an HTTP charset parameter, an AMQP `content_encoding`, an explicit dedupe key).

1. **Character set** (`choose_charset`): the transport's or channel's charset if set, else MSH-18 read
   from the raw bytes (`engine.hl7v2.charset.sniff_charset`), else UTF-8. An MSH-18 label that is
   neither in HL7 Table 0211 nor a Python codec falls back to UTF-8 when the bytes decode, noted on the
   message (metadata `charset_note`); when they do not, AR. A label naming something other than a text
   encoding on the allow-list (base64, zlib, idna, punycode, undefined, a NUL...) is an AR (HTTP 4xx
   for a transport charset), and the input is stored `rejected`.
2. **Reading** (`read_payload`): decode; a frame with one MSH is one message, an FHS/BHS envelope or
   several MSH a batch (HL7 v2.5.1 §2.10.3) split by `engine.hl7v2.batch.split_batch`; each header is
   read and checked by `engine.hl7v2.header.read_header` (every line a segment, §2.8 terminators as in
   `engine.hl7v2.lines`). If any message of a batch is unreadable the whole payload is rejected once,
   so a sender never has to resend half a batch.
3. **Duplicates** (`dedupe_key`, `content_hash`): a sender's retry has the same MSH-4 + MSH-10 *and*
   the same content. Content identity is a SHA-1 (64 bits kept) of the message with MSH-7 (date/time of
   message) and MSH-10 (control id) blanked: a resend with a new timestamp is still a duplicate, while
   a reused control id with other content (counters reset at restart) is a new message, stored and
   flagged `control_id_reused` by the store. A header that is not trusted or an MSH-10 that is not
   plausible (`engine.hl7v2.header.plausible_control_id`) gives no dedupe key: never a false duplicate.
4. **Rejection** (`rejected_message`): whatever header fields can be read are kept on the stored row
   (control id first, so `/messages?control_id=` finds it) and echoed in the AR by
   `engine.hl7v2.ack.build_ack`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import CharsetError, Hl7ParseError, RejectedMessage, UnsupportedCharsetError
from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import RAW_SPLIT_SAFE, decode, python_codec, sniff_charset
from engine.hl7v2.header import MshHeader, best_effort_header, plausible_control_id, read_header
from engine.hl7v2.lines import first_line_end, terminator
from engine.hl7v2.validate import CONTROL_CHARS
from engine.types import HL7V2, InboundMessage

FALLBACK_CHARSET = "UTF-8"
"""What an unknown MSH-18 label falls back to (when the bytes decode in it)."""


@dataclass(frozen=True, slots=True)
class CharsetChoice:
    """How a payload is decoded: the label stored with it, its Python codec, and why, when unusual."""

    label: str | None
    codec: str
    note: str | None = None


_CODECS: dict[str, str] = {}
"""Label → codec for labels already seen (a handful per deployment)."""


def choose_charset(raw: bytes, configured: str | None = None) -> CharsetChoice:
    """Rule 1 of the module docstring; raise `CharsetError` when the input must be rejected."""
    if configured:
        try:
            return CharsetChoice(configured, _codec(configured))
        except UnsupportedCharsetError:
            raise
        except LookupError:
            raise CharsetError(f"unknown character set {_shown(configured)} (HL7 table 0211)",
                               code="103", location="MSH^1^18") from None
    label = sniff_charset(raw)
    if label is None:
        return CharsetChoice(None, "utf-8")
    try:
        return CharsetChoice(label, _codec(label))
    except UnsupportedCharsetError:
        raise
    except LookupError:
        pass
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CharsetError(f"unknown character set {_shown(label)} in MSH-18 (HL7 table 0211), and the "
                           f"bytes are not valid {FALLBACK_CHARSET} either", code="103",
                           location="MSH^1^18") from None
    return CharsetChoice(FALLBACK_CHARSET, "utf-8",
                         note=f"MSH-18 {_shown(label)} is not a known character set; decoded as UTF-8")


def _codec(label: str) -> str:
    codec = _CODECS.get(label)
    if codec is None:
        codec = python_codec(label)  # LookupError / UnsupportedCharsetError
        if len(_CODECS) < 256:
            _CODECS[label] = codec
    return codec


def _shown(label: str) -> str:
    return repr(CONTROL_CHARS.sub("?", label[:32]))


@dataclass(frozen=True, slots=True)
class Hl7Payload:
    """A payload read by `read_payload`: its messages (header, bytes), or the reason it is rejected."""

    charset: CharsetChoice
    messages: list[tuple[MshHeader, bytes]] = field(default_factory=list)
    error: RejectedMessage | None = None
    header: MshHeader | None = None
    """The rejected payload's header as far as it can be read (None when accepted)."""

    @property
    def batch(self) -> bool:
        return len(self.messages) > 1


def read_payload(raw: bytes, *, charset: str | None = None) -> Hl7Payload:
    """Rules 1 and 2 of the module docstring for one payload (an MLLP frame, an HTTP body, an AMQP
    delivery); ``charset`` is what the transport or channel configuration says, if anything."""
    try:
        choice = choose_charset(raw, charset)
    except CharsetError as exc:
        choice = CharsetChoice(charset, "utf-8")
        return Hl7Payload(choice, error=exc, header=best_effort_header(raw, "utf-8"))
    try:
        text = decode(raw, choice.label if choice.label else None)
        single = raw.startswith(b"MSH") and raw.find(b"MSH", 3) < 0  # one scan, common case
        parts = [text] if single or not _is_batch(text) else split_batch(text)
        if len(parts) == 1:
            return Hl7Payload(choice, [(read_header(parts[0], raw, choice.codec, single=single), raw)])
        found = []
        for i, part in enumerate(parts, 1):
            data = part.encode(choice.codec)
            try:
                found.append((read_header(part, data, choice.codec, single=True), data))
            except Hl7ParseError as exc:
                raise Hl7ParseError(f"batch message {i}: {exc.reason}", code=exc.code,
                                    location=exc.location) from None
        return Hl7Payload(choice, found)
    except CharsetError as exc:
        return Hl7Payload(choice, error=_not_hl7(raw) or exc, header=best_effort_header(raw, choice.codec))
    except RejectedMessage as exc:
        return Hl7Payload(choice, error=exc, header=best_effort_header(raw, choice.codec))


def _is_batch(text: str) -> bool:
    """An FHS/BHS envelope or several MSH (HL7 v2.5.1 §2.10.3); anything else is read as one message,
    so that non-HL7 input gets the reader's reason ("looks like JSON")."""
    head = text.lstrip("\ufeff\r\n\t ")
    return head.startswith(("FHS", "BHS")) or "\rMSH" in head or "\nMSH" in head


def _not_hl7(raw: bytes) -> Hl7ParseError | None:
    """For bytes that fail to decode: the structural reason instead, when they are not HL7 at all
    ("payload starts with ..., expected MSH" is what the sender needs to hear, not a byte offset)."""
    if raw.lstrip(b"\xef\xbb\xbf\r\n\t ").startswith((b"MSH", b"FHS", b"BHS")):
        return None
    try:
        read_header(raw.decode("latin-1"), raw, "latin-1")
    except Hl7ParseError as exc:
        return exc
    return None


def dedupe_key(hdr: MshHeader) -> str | None:
    """``MSH-4|MSH-10``, or None when the header is not trusted or MSH-10 is not plausible."""
    control_id = hdr.control_id
    if not hdr.trusted or not plausible_control_id(control_id):
        return None
    return f"{hdr.first(4)}|{control_id}"


HASH_CHARS = 16
"""Hex characters of a content hash kept (64 bits): it only tells apart messages with the same MSH-4 +
MSH-10 inside the dedupe window, and every character is in the store's lookup index."""


def content_hash(hdr: MshHeader, raw: bytes) -> str:
    """SHA-1 (first `HASH_CHARS` hex characters; identity, not security) of the message with MSH-7 and
    MSH-10 blanked and trailing terminators ignored (rule 3 of the module docstring). ``raw``: the
    message's bytes, hashed as they are where MSH splits on raw bytes (the common case)."""
    data = raw.rstrip(b"\r\n\t ")
    if hdr.note is None and hdr.codec in RAW_SPLIT_SAFE and data.startswith(b"MSH"):
        end = first_line_end(data)
        fs = data[3:4]
        parts = data[:end].split(fs, 10) if fs else []  # parts[n] is MSH-(n + 1) for 1 <= n <= 9
        if len(parts) == 11:
            parts[6] = parts[9] = b""
            digest = hashlib.sha1(fs.join(parts), usedforsecurity=False)
            digest.update(data[end:])
            return digest.hexdigest()[:HASH_CHARS]
    digest = hashlib.sha1(usedforsecurity=False)
    fields = hdr.msh[:hdr.width]  # other charsets, or a header read from the raw bytes
    fields[6] = fields[9] = ""
    text = hdr.text.rstrip("\r\n\t ")
    end = text.find(terminator(text))
    digest.update(hdr.enc.field.join(fields).encode("utf-8", "surrogatepass"))
    digest.update(text[end:].encode("utf-8", "surrogatepass") if end >= 0 else b"")
    return digest.hexdigest()[:HASH_CHARS]


def inbound_message(hdr: MshHeader, raw: bytes, choice: CharsetChoice, *, channel: str, received_at: float,
                    peer: str | None, key: str | None = None,
                    metadata: Mapping[str, str] | None = None) -> InboundMessage:
    """The message to commit for one readable HL7 v2 message; ``key`` is an explicit transport key
    (HTTP Idempotency-Key, AMQP message_id), which wins over MSH-4|MSH-10."""
    notes = metadata
    if choice.note is not None or hdr.note is not None:
        notes = dict(metadata or {})
        if choice.note is not None:
            notes["charset_note"] = choice.note
        if hdr.note is not None:
            notes["header_note"] = hdr.note
    control_id = hdr.control_id
    return InboundMessage(
        channel=channel, raw=raw, content_type=HL7V2, received_at=received_at, peer=peer,
        charset=choice.label, sending_application=hdr.first(3) or None,
        sending_facility=hdr.first(4) or None, control_id=control_id or None,
        message_type=hdr.message_type or None, dedupe_key=key or dedupe_key(hdr),
        content_hash=content_hash(hdr, raw), metadata=notes or {})


def rejected_message(payload: Hl7Payload, raw: bytes, *, channel: str, received_at: float,
                     peer: str | None, metadata: Mapping[str, str] | None = None) -> InboundMessage:
    """The message to store `rejected`, with every header field that could be read (rule 4)."""
    hdr = payload.header
    return InboundMessage(
        channel=channel, raw=raw, content_type=HL7V2, received_at=received_at, peer=peer,
        charset=payload.charset.label,
        sending_application=(hdr.first(3) or None) if hdr is not None else None,
        sending_facility=(hdr.first(4) or None) if hdr is not None else None,
        control_id=_readable(hdr.control_id) if hdr is not None else None,
        message_type=(hdr.message_type or None) if hdr is not None else None,
        metadata=metadata or {})


def _readable(value: str) -> str | None:
    return value if plausible_control_id(value) else None


def reply_codec(payload: Hl7Payload) -> str:
    """The codec to encode the ACK in: the payload's, UTF-8 when it could not be chosen."""
    return payload.charset.codec
