"""One dropped file → the messages to commit, or the reason it is rejected as a whole.

A file is one of: an HL7 v2 message or batch (FHS/BHS, or several MSH; HL7 v2.5.1 §2.10.3), an NDJSON
of FHIR resources (FHIR R4 Bulk Data "ndjson": one resource per line), a JSON array of FHIR resources,
or one FHIR resource / Bundle in JSON or XML. Splitting and parsing reuse channels/payload.py, exactly as
the HTTP and AMQP channels do, so a message taken from a file is stored like one received over HTTP.

Every message of a file carries the dedupe key `<channel>:file:<sha256 of the file>[#i]`: after a crash
between the commit and the move to done/, taking the same file again finds every message already
stored (a duplicate, not a second copy), so nothing is taken twice. A file with any unreadable part is
rejected whole (the sender fixes and re-drops one file, never half of one), as MLLP and HTTP do with a
batch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import orjson

from channels.payload import Envelope, fhir_messages, hl7v2_items
from engine.errors import CharsetError, FhirParseError, RejectedMessage
from engine.hl7v2.charset import python_codec
from engine.types import FHIR_JSON, FHIR_XML, InboundMessage

_BOM = b"\xef\xbb\xbf"
_HL7_STARTS = (b"MSH", b"FHS", b"BHS")


class FileFormat(enum.StrEnum):
    """What a dropped file holds; `auto` decides from its first bytes (and `.ndjson` from its name)."""

    AUTO = "auto"
    HL7V2 = "hl7v2"
    NDJSON = "ndjson"
    JSON = "json"
    XML = "xml"


@dataclass(frozen=True, slots=True)
class Intake:
    """A parsed file: its messages, or one rejected message holding the whole file and the reason."""

    messages: tuple[InboundMessage, ...] = ()
    rejected: InboundMessage | None = None
    reason: str | None = None


def detect(raw: bytes, name: str) -> FileFormat:
    """The format of a file from its first non-blank bytes; NDJSON from a `.ndjson` name or several lines."""
    head = raw[3:] if raw.startswith(_BOM) else raw
    head = head.lstrip(b" \t\r\n")
    if head.startswith(_HL7_STARTS):
        return FileFormat.HL7V2
    if name.lower().endswith((".ndjson", ".jsonl")):
        return FileFormat.NDJSON
    if head.startswith(b"["):
        return FileFormat.JSON
    if head.startswith(b"<"):
        return FileFormat.XML
    if head.startswith(b"{"):
        try:
            orjson.loads(head)
        except orjson.JSONDecodeError:
            return FileFormat.NDJSON  # not one JSON document: one per line
        return FileFormat.JSON
    return FileFormat.HL7V2  # let the HL7 parser say what is wrong ("no MSH segment")


def parse_file(raw: bytes, env: Envelope, *, name: str, fmt: FileFormat = FileFormat.AUTO,
               charset: str | None = None, fhir_release: str = "R4B") -> Intake:
    """Split and parse a whole file; `env.key` is the file's dedupe key (see the module docstring)."""
    kind = detect(raw, name) if fmt is FileFormat.AUTO else fmt
    if not raw.strip():
        return _reject(raw, env, "empty file", kind)
    if kind is FileFormat.HL7V2:
        items = hl7v2_items(raw, env, charset=charset)
        bad = next((i for i in items if i.error is not None), None)
        if bad is not None and bad.error is not None:
            return Intake(rejected=bad.inbound, reason=bad.error.reason)
        return Intake(messages=tuple(i.inbound for i in items))
    try:
        text = _utf8(raw, charset)
        if kind is FileFormat.NDJSON:
            return Intake(messages=tuple(_ndjson(text, env, fhir_release)))
        if kind is FileFormat.XML:
            return Intake(messages=tuple(fhir_messages(text, env, content_type=FHIR_XML,
                                                       release=fhir_release)))
        return Intake(messages=tuple(_json(text, env, fhir_release)))
    except RejectedMessage as exc:
        return _reject(raw, env, exc.reason + _issues(exc), kind)


def _reject(raw: bytes, env: Envelope, reason: str, kind: FileFormat) -> Intake:
    ctype = FHIR_XML if kind is FileFormat.XML else FHIR_JSON if kind is not FileFormat.HL7V2 else \
        "x-application/hl7-v2+er7"
    whole = InboundMessage(channel=env.channel, raw=raw, content_type=ctype, received_at=env.received_at,
                           peer=env.peer, metadata=env.metadata)
    return Intake(rejected=whole, reason=reason)


def _issues(exc: RejectedMessage) -> str:
    issues = exc.issues if isinstance(exc, FhirParseError) else []
    return "".join(f"; {path}: {text}" for path, text in issues[:5])


def _utf8(raw: bytes, charset: str | None) -> bytes:
    """FHIR JSON/XML is UTF-8 (FHIR R4 §3.1.0.6 / §2.6.1); a channel `charset` such as GB18030 is
    transcoded to UTF-8 first."""
    if raw.startswith(_BOM):
        raw = raw[3:]
    if not charset:
        return raw
    try:
        codec = python_codec(charset)
    except LookupError:
        raise CharsetError(f"unknown character set {charset!r} configured for the channel") from None
    if codec == "utf-8":
        return raw
    try:
        return raw.decode(codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharsetError(f"byte 0x{raw[exc.start]:02X} at offset {exc.start} is not valid {charset}",
                           code="102") from None


def _ndjson(text: bytes, env: Envelope, release: str) -> list[InboundMessage]:
    out: list[InboundMessage] = []
    for number, line in enumerate(text.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            out.extend(fhir_messages(line, _keyed(env, f"L{number}"), content_type=FHIR_JSON,
                                     release=release))
        except FhirParseError as exc:
            raise FhirParseError(f"line {number}: {exc.reason}", issues=exc.issues) from None
    if not out:
        raise FhirParseError("no FHIR resource in the file")
    return out


def _json(text: bytes, env: Envelope, release: str) -> list[InboundMessage]:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FhirParseError(f"not JSON: {exc}") from None
    if isinstance(doc, dict):
        return fhir_messages(text, env, content_type=FHIR_JSON, release=release)
    if not isinstance(doc, list) or not doc:
        raise FhirParseError("expected a FHIR resource, or a non-empty JSON array of FHIR resources")
    out: list[InboundMessage] = []
    for i, element in enumerate(doc):
        try:
            out.extend(fhir_messages(orjson.dumps(element), _keyed(env, f"E{i}"), content_type=FHIR_JSON,
                                     release=release))
        except FhirParseError as exc:
            raise FhirParseError(f"array element {i}: {exc.reason}", issues=exc.issues) from None
    return out


def _keyed(env: Envelope, part: str) -> Envelope:
    return replace(env, key=f"{env.key}#{part}" if env.key else None)
