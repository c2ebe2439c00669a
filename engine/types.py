"""The contracts between yonglink's rooms: message envelopes, states and callable shapes.

Channels hand an `InboundMessage` to the engine; the engine stores it as a `StoredMessage`; the pipeline
turns it into `RouteResult`s (`RouteFn`) whose deliveries are `DeliveryItem`s handed to an outbound
channel.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

HL7V2 = "x-application/hl7-v2+er7"
"""Content type of an HL7 v2 ER7 payload (the MIME name HL7 recommends for ER7 over HTTP)."""
FHIR_JSON = "application/fhir+json"
"""Content type of a FHIR JSON payload."""
FHIR_XML = "application/fhir+xml"
"""Content type of a FHIR XML payload."""

HL7V2_TYPES = frozenset({HL7V2, "application/hl7-v2", "text/plain"})
"""Media types read as HL7 v2 ER7: HL7's recommended name, its unregistered alias, plain text."""
FHIR_JSON_TYPES = frozenset({FHIR_JSON, "application/json"})
"""Media types read as FHIR JSON."""
FHIR_XML_TYPES = frozenset({FHIR_XML, "application/xml", "text/xml"})
"""Media types read as FHIR XML."""
SHORT_TYPES = {"hl7v2": HL7V2, "er7": HL7V2, "json": FHIR_JSON, "xml": FHIR_XML}
"""Short names that route tests and the CLI accept for a content type."""

JSON = dict[str, Any]
"""A JSON object as parsed by orjson: what a mapped dataset record is."""


class MessageState(enum.StrEnum):
    """Life of a stored message: `received` until the pipeline decides, then one of the rest."""

    RECEIVED = "received"
    FILTERED = "filtered"
    MAPPED = "mapped"
    FAILED = "failed"
    REJECTED = "rejected"


class DeliveryState(enum.StrEnum):
    """Life of one (message, route, destination) delivery row: `queued` until sent or dead."""

    QUEUED = "queued"
    SENT = "sent"
    DEAD = "dead"


class DestinationState(enum.StrEnum):
    """What `/status` shows for a destination's worker."""

    OK = "ok"
    DOWN = "down"
    """Several requests in a row failed: the worker probes with one delivery at a time."""
    BLOCKED = "blocked"
    """FIFO: a head that failed holds back its key until it is sent or dead."""
    DISABLED = "disabled"
    """`enabled: false` in the config: no worker runs; deliveries stay queued."""


class DeadLetterKind(enum.StrEnum):
    """Why a dead letter exists: a delivery that gave up, or a message that could not be mapped."""

    DELIVERY = "delivery"
    MAPPING = "mapping"


class ChannelState(enum.StrEnum):
    """What `/status` shows for an inbound channel."""

    STARTING = "starting"
    STARTED = "started"
    PAUSED = "paused"
    STOPPED = "stopped"
    RECONNECTING = "reconnecting"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """What a channel hands to the engine to be committed, before any ACK is sent.

    The header fields come from whatever the channel parsed to be able to acknowledge (MSH for HL7 v2,
    resourceType/id for FHIR). `dedupe_key` identifies a retry of the same message by the sender
    (MSH-4 + MSH-10, or an HTTP Idempotency-Key); None disables duplicate detection for this message.
    """

    channel: str
    raw: bytes
    content_type: str
    received_at: float
    peer: str | None = None
    charset: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    dedupe_key: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_hash: str | None = None
    """Identity of the content for duplicate detection (HL7 v2: `engine.hl7v2.inbound.content_hash`); a
    stored message with the same dedupe key but another hash is not a duplicate (a reused control id).
    None: the dedupe key alone decides."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as the store holds it (raw bytes may be omitted in listings)."""

    id: str
    channel: str
    received_at: float
    content_type: str
    state: MessageState
    raw: bytes | None = None
    peer: str | None = None
    charset: str | None = None
    sending_application: str | None = None
    sending_facility: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    error: str | None = None
    processed_at: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Acceptance:
    """The store's answer to a commit: the message id, and whether it was a duplicate already stored.

    `processed`: the message was stored with its final state already (a channel no route selects:
    `filtered`), so the pipeline has nothing to do with it.
    """

    message_id: str
    duplicate: bool = False
    processed: bool = False
    reused: bool = False
    """Stored as a new message although an earlier one in the dedupe window has its dedupe key (same
    MSH-4 + MSH-10) with other content: flagged `control_id_reused` in its metadata."""


@dataclass(frozen=True, slots=True)
class ProcessingOutcome:
    """What the pipeline decided for a message (for `ack: after_processing`)."""

    message_id: str
    state: MessageState
    error: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryItem:
    """One thing to send to one destination: the mapped record (JSON bytes) or the original message."""

    delivery_id: str
    message_id: str
    destination: str
    payload: bytes
    content_type: str
    attempt: int = 1
    route_id: str | None = None
    dataset: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a destination said on success (kept as the last response summary)."""

    response: str = ""


@dataclass(frozen=True, slots=True)
class RouteResult:
    """The outcome of one route for one message: a record for some destinations, filtered, or an error."""

    route_id: str
    dataset: str | None = None
    record: JSON | None = None
    filtered: str | None = None
    error: str | None = None
    destinations: tuple[str, ...] = ()
    passthrough: bool = False


RouteFn = Callable[[StoredMessage], list[RouteResult]]
"""The mapping room's router (`engine.mapping.Router.route`): the result of every route that selects
one stored message. Synchronous, CPU only: the pipeline calls it on the loop between `await`s (or the
mapping workers run it in other processes), so a reload switches routes between messages."""

Routed = tuple[StoredMessage, list[RouteResult]]
"""A message with its route results, as the pipeline's outcome transaction hands it to delivery."""

Landed = Callable[[Acceptance | BaseException], None]
"""Called once per accepted message, on the loop, after its commit: the acceptance, or why nothing was
committed (`ChannelContext.accept_soon`)."""
