"""Every exception yonglink raises on purpose, in one tree.

Callers branch on the *type* (transient vs permanent, rejected vs failed), never on message text.
Each class here is raised somewhere (or is the base of classes that are); a mapped record that fails
its dataset schema is not an exception but an error `RouteResult` (engine/mapping/mapper.py).
"""

from __future__ import annotations


class EngineError(Exception):
    """Raised when yonglink itself detects a problem; the root of every error below."""


# --- configuration -------------------------------------------------------------------------------


class ConfigError(EngineError):
    """Raised when a config, route or table file is invalid; `str()` names file:line and key path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key = file, line, key
        where = f" ({file}:{line})" if file and line else (f" ({file})" if file else "")
        prefix = f"{key}: " if key else ""
        super().__init__(f"{prefix}{message}{where}")
        self.bare_message = message


class ListenError(EngineError):
    """Raised when a channel or the admin API cannot listen on its address (port in use, no permission)."""


# --- inbound ------------------------------------------------------------------------------------


class InboundError(EngineError):
    """Raised when inbound bytes cannot be accepted. (MLLP framing problems are not exceptions: the
    frame decoder, channels/mllp/framing.py, reports `Oversize` / `Discarded` events in-line.)"""


class RejectedMessage(InboundError):
    """Raised when a payload cannot be parsed enough to acknowledge positively (ACK AR / HTTP 400).

    `code` is an HL7 table 0357 error code; `location` an ERR-2 style location where known.
    """

    def __init__(self, reason: str, *, code: str = "100", location: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.code, self.location = reason, code, location


class CharsetError(RejectedMessage):
    """Raised when the payload's bytes do not decode in the declared or detected character set."""


class UnsupportedCharsetError(CharsetError, LookupError):
    """Raised when a character set label names something that is not an accepted text encoding (a bytes
    codec such as base64, idna, a name with a NUL); a `LookupError` too, for codec-lookup callers."""


class Hl7ParseError(RejectedMessage):
    """Raised when text is not an HL7 v2 message (no MSH, bad encoding characters, truncated MSH)."""


class FhirParseError(RejectedMessage):
    """Raised when a FHIR payload is malformed or invalid; `issues` holds (element path, text) pairs."""

    def __init__(self, reason: str, *, issues: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason, code="100")
        self.issues = issues or []


# --- store --------------------------------------------------------------------------------------


class StoreError(EngineError):
    """Raised when the durable store cannot commit or read; never ACK positively after this."""


class StoreFullError(StoreError):
    """Raised when a commit needs space the store does not have (`store.max_size` reached, or disk full)."""


class StoreUnavailable(StoreError):
    """Raised when the store's server cannot be reached (PostgreSQL down, connection lost); transient:
    the store reconnects by itself with backoff, and the caller answers "try again" (never a positive ACK)."""


class NodeIdInUse(EngineError):
    """Raised when a node starts with the id of another node of the cluster that is still alive (two
    processes with one `engine.cluster.node_id` would claim the same deliveries)."""


class MigrationError(StoreError):
    """Raised when a schema migration cannot be applied, or the store is newer than this engine knows."""


# --- mapping ------------------------------------------------------------------------------------


class MappingError(EngineError):
    """Raised when a route cannot map a message; the text names route file:line, field, path, value."""

    def __init__(self, message: str, *, route: str | None = None, line: int | None = None,
                 field: str | None = None, path: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.route, self.line, self.field, self.path, self.value = route, line, field, path, value


class PathSyntaxError(MappingError):
    """Raised when an HL7 v2 path or FHIRPath expression in a route does not parse."""


class MappingUnavailable(EngineError):
    """The mapping workers could not map a batch (one died, or none starts): transient, the messages stay
    `received` and are mapped again. Not a MappingError: nothing is wrong with the messages."""


class FilteredMessage(EngineError):  # a signal, named like structlog's DropEvent
    """Raised by a route filter to drop a message on purpose; `reason` is recorded in the store."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- delivery -----------------------------------------------------------------------------------


class DeliveryError(EngineError):
    """Raised when an outbound destination did not accept an item."""

    def __init__(self, message: str, *, response: str | None = None) -> None:
        super().__init__(message)
        self.response = response


class TransientDeliveryError(DeliveryError):
    """Raised when a delivery may succeed later (timeouts, refused connections, 5xx, 429, no ACK)."""

    def __init__(self, message: str, *, response: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, response=response)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Raised when retrying cannot help (4xx such as 400/422, MLLP AR/CR): straight to the DLQ."""
