"""Turn one inbound payload (HL7 v2 ER7 or FHIR JSON/XML) into the `InboundMessage`s to commit.

Shared by the HTTP and AMQP channels, which both receive a whole payload with a content type. HL7 v2
payloads follow the inbound rules every channel shares, MLLP included (`engine.hl7v2.inbound`:
charset, header checks, batch split, dedupe key and content identity); this module only adds what the
transport says (its charset, an explicit key, metadata). FHIR Bundles
of type transaction/batch/message/collection/searchset are split into one message per entry
(`engine.fhir.bundle.entries`), each stored as FHIR JSON, so routes select on the entry's resourceType.

Dedupe keys are what makes a sender's retry harmless: an explicit key (HTTP `Idempotency-Key`, AMQP
`message_id`) wins and is scoped to the channel; otherwise HL7 v2 uses `MSH-4|MSH-10` (the same key
MLLP uses) and FHIR uses `Bundle.identifier` or `<type>/<id>/_history/<meta.versionId>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from engine.errors import FhirParseError, RejectedMessage
from engine.fhir import bundle
from engine.fhir.parse import model_class, parse_fhir_data, to_dict
from engine.hl7v2.header import MshHeader
from engine.hl7v2.inbound import inbound_message, read_payload, rejected_message
from engine.types import FHIR_JSON, FHIR_JSON_TYPES, FHIR_XML, FHIR_XML_TYPES, HL7V2_TYPES, InboundMessage

FHIR_MEDIA_TYPES = FHIR_JSON_TYPES | FHIR_XML_TYPES


def media_type(header: str | None) -> tuple[str, str | None]:
    """`text/plain; charset=GB18030` → (`text/plain`, `GB18030`); lower-cased type, charset as sent."""
    if not header:
        return "", None
    kind, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    return kind.strip().lower(), charset


def payload_kind(content_type: str) -> str | None:
    """`hl7v2`, `fhir` or None for a media type (already split by `media_type`)."""
    if content_type in HL7V2_TYPES:
        return "hl7v2"
    if content_type in FHIR_MEDIA_TYPES:
        return "fhir"
    return None


@dataclass(frozen=True, slots=True)
class Hl7Item:
    """One HL7 v2 message of a payload, or the whole payload with the reason it is rejected."""

    inbound: InboundMessage
    header: MshHeader | None
    """Its MSH (for the ACK); for a rejected payload whatever could be read of it, maybe nothing."""
    codec: str
    """The Python codec to encode this message's ACK in."""
    error: RejectedMessage | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """Transport facts every message of a payload shares."""

    channel: str
    received_at: float
    peer: str | None = None
    key: str | None = None
    """An explicit dedupe key from the transport (already scoped to the channel), or None."""
    metadata: Mapping[str, str] = field(default_factory=dict)


def hl7v2_items(raw: bytes, env: Envelope, *, charset: str | None = None) -> list[Hl7Item]:
    """The payload's messages under the shared inbound rules (``charset``: the transport's, if any).

    As MLLP: if any message of a batch is unreadable, the whole payload is ONE rejected item holding
    the raw bytes (header fields filled in where the MSH can be read), so a sender never has to
    resend half a batch.
    """
    read = read_payload(raw, charset=charset)
    codec = read.charset.codec
    if read.error is not None:
        msg = rejected_message(read, raw, channel=env.channel, received_at=env.received_at, peer=env.peer,
                               metadata=env.metadata)
        return [Hl7Item(msg, read.header, codec, error=read.error)]
    single = not read.batch
    items = []
    for i, (hdr, data) in enumerate(read.messages):
        key = env.key if single or env.key is None else f"{env.key}#{i}"
        msg = inbound_message(hdr, data, read.charset, channel=env.channel, received_at=env.received_at,
                              peer=env.peer, key=key, metadata=env.metadata)
        items.append(Hl7Item(msg, hdr, codec))
    return items


def fhir_messages(raw: bytes, env: Envelope, *, content_type: str, release: str = "R4B",
                  expected_type: str | None = None, split: bool = True) -> list[InboundMessage]:
    """Parse a FHIR payload into the messages to commit; raise `FhirParseError` naming element paths.

    ``expected_type`` is the `{resourceType}` of a `POST /fhir/{resourceType}` URL; a body of another
    type is an error on `resourceType`. A splittable Bundle becomes one message per entry
    (`engine.fhir.bundle.entries`): a DELETE entry is stored as a stub of the resource it deletes, and
    every entry keeps its ``request.method`` (metadata ``request_method``, which sets the record's
    operation) and the Bundle's sender (MessageHeader.source.name / ``meta.source``) as its sending
    facility. A batch of requests only (GET: a query), a searchset, and any Bundle whose entries carry
    nothing to route, are stored whole; only a Bundle with no entry at all is refused.
    """
    # The JSON as sent (parse_fhir_data): dumping the whole model again would cost more than parsing.
    resource, data = parse_fhir_data(raw, content_type=content_type, release=release)
    rtype: str = resource.get_resource_type()  # type: ignore[attr-defined]
    if expected_type is not None and rtype != expected_type:
        raise FhirParseError(f"body is a {rtype}, the URL names {expected_type}",
                             issues=[("resourceType", f"expected {expected_type}, got {rtype}")])
    entries = bundle.entries(data, known=lambda t: model_class(t, release))  # DELETE URLs checked here
    if rtype == "Bundle" and not data.get("entry") and data.get("type") in ("transaction", "message",
                                                                           "collection"):
        raise FhirParseError(f"{data.get('type')} Bundle has no entry to store",
                             issues=[("Bundle.entry", "no entry")])
    key = env.key or _bundle_key(env.channel, data) or _version_key(env.channel, data)
    sender = bundle.sender(data) or None
    base = InboundMessage(channel=env.channel, raw=raw, content_type=_fhir_type(content_type),
                          received_at=env.received_at, peer=env.peer, metadata=env.metadata,
                          sending_facility=sender)
    if not split or not entries:
        return [_replace(base, message_type=rtype, control_id=data.get("id"), dedupe_key=key)]
    out = []
    models = getattr(resource, "entry", None) or []
    for n, entry in enumerate(entries):
        model = models[entry.index].resource if entry.index < len(models) else None
        edata = to_dict(model) if model is not None else entry.resource  # a DELETE stub has no model
        ekey = f"{key}#{n}" if key else _version_key(env.channel, edata)
        meta = {**env.metadata, "bundle_entry": str(entry.index)}
        if data.get("id"):
            meta["bundle_id"] = str(data["id"])
        if entry.method:
            meta["request_method"] = entry.method
        out.append(_replace(base, raw=orjson.dumps(edata), content_type=FHIR_JSON,
                            message_type=edata.get("resourceType"), control_id=edata.get("id"),
                            dedupe_key=ekey, metadata=meta,
                            sending_facility=sender or bundle.sender(edata) or None))
    return out


def _fhir_type(content_type: str) -> str:
    return FHIR_XML if content_type in FHIR_XML_TYPES else FHIR_JSON


def _bundle_key(channel: str, data: Mapping[str, Any]) -> str | None:
    ident = data.get("identifier") if data.get("resourceType") == "Bundle" else None
    if isinstance(ident, dict) and ident.get("value"):
        return f"{channel}:bundle:{ident.get('system', '')}|{ident['value']}"
    return None


def _version_key(channel: str, data: Mapping[str, Any]) -> str | None:
    meta = data.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    if data.get("id") and version:
        return f"{channel}:{data['resourceType']}/{data['id']}/_history/{version}"
    return None


def _replace(msg: InboundMessage, **changes: Any) -> InboundMessage:
    return replace(msg, **changes)
