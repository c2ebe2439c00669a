"""The `Source` protocol: one read-only view over a parsed inbound message, HL7 v2 or FHIR.

Why: the mapping runtime (routes, `each:` groups, filters) must not care whether a record comes from an
HL7 v2 ER7 message or a FHIR resource. It reads values through four members and nothing else:

* ``kind`` - ``"hl7v2"`` or ``"fhir"``; tells the route which path language its paths are written in.
* ``get(path) -> str | None`` - the first value at ``path``; ``None`` when the path is absent **or empty**
  (an empty HL7 field ``||`` and a missing one are the same to a mapping; ``""`` is never returned).
* ``get_all(path) -> list[str]`` - every non-empty value at ``path`` in message order (all repetitions,
  all repeated segments / FHIR collection items); ``[]`` when none.
* ``children(group_path) -> list[Source]`` - one sub-source per item of a repeating group, for ``each:``
  (one output row per item). Paths given to a child are *relative to that item*.
* ``header`` - a small ``Mapping[str, str]`` of routing facts (keys in `HEADER_KEYS`, ``""`` if unknown).

Path languages
--------------
HL7 v2 (``kind == "hl7v2"``, see `engine.hl7v2.path`), 1-based as in HL7 v2.5.1 §2.5 / §2.6:

===========================  ===============================================================
``PID-5``                    field 5 (first repetition, whole field, components joined raw)
``PID-5.1`` / ``PID-5.1.2``  component 1 / subcomponent 2 of component 1
``PID-3[*].1``               component 1 of every repetition (use with ``get_all``)
``PID-3[2].1``               component 1 of repetition 2
``PID-3[CX.5=ID].1``         component 1 of the repetition whose component 5 is ``ID``
                             (``PID-3[5=ID].1`` is the same; the ``CX.`` type prefix is optional)
``OBX[*]-5`` / ``OBX[2]-5``  OBX-5 of every OBX / of the 2nd OBX segment (``OBX-5`` = first OBX)
``MSH-9.2``                  MSH-1 is the field separator itself, MSH-2 the encoding characters
===========================  ===============================================================

Values are returned with escape sequences decoded (``\\F\\`` -> ``|``, ``\\.br\\`` -> newline, ...).
A field path without component (``PID-5``) returns the *decoded* text of the first repetition
including its ``^`` separators; map components explicitly when you need them.

HL7 ``children``:

* ``children("OBX[*]")`` (or ``"OBX"``) -> one child per OBX segment; the child reads relative paths
  ``"5"``, ``"3.2"``, ``"3[*].1"``, ``"3[CX.5=ID].1"`` on that segment.
* ``children("OBR[*]")`` -> one child per OBR; inside it, ``get("4.1")`` reads that OBR and
  ``children("OBX[*]")`` yields only the OBX segments *following this OBR up to the next OBR*
  (ORU^R01 ORDER_OBSERVATION groups, HL7 v2.5.1 §7.4.1.1). This nesting works for any head segment.
* ``children("PID-3[*]")`` -> one child per repetition of a field; the child reads ``"1"``, ``"5"``,
  ``"4.2"`` (component[.subcomponent]) of that repetition.

FHIR (``kind == "fhir"``, see `engine.fhir.path`): FHIRPath expressions evaluated on the resource,
e.g. ``Patient.identifier.where(system='urn:oid:2.16.156.10011.1.3').value``. Primitive results are
converted to their FHIR JSON text (``true``/``false`` for booleans, numbers as written, dates as
ISO strings); complex results (whole elements such as a ``HumanName``) are skipped by ``get``/
``get_all``: path down to a primitive instead.

FHIR ``children("Observation.component")`` (any FHIRPath) -> one child per resulting element; the
child evaluates FHIRPath relative to the element (``code.coding.code``, ``valueQuantity.value``).
For a Bundle, ``children("Bundle.entry.resource")`` yields one child per entry resource, and those
children accept normal resource paths (``Observation.code.coding.code``).

Header keys
-----------
See `HEADER_KEYS`. HL7: from MSH (``message_type`` ``"ADT^A01"``, ``control_id`` MSH-10, ...).
FHIR: ``message_type`` is the resourceType (``"Patient"``), ``resource_type`` the same,
``control_id`` the resource ``id`` (for a message Bundle: ``Bundle.identifier.value`` else id),
``sending_facility`` from ``MessageHeader.source.name`` when the resource is a message Bundle.

Errors: a malformed path raises `engine.errors.PathSyntaxError` (column and what was expected).

Implementations: `engine.hl7v2.er7.Er7Message` (and its segments / groups) is itself a `Source`;
FHIR resources are wrapped by `engine.fhir.source.FhirSource`. Construction: `open_source` turns a
payload into a `Source` by content type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol, runtime_checkable

from engine.types import FHIR_JSON_TYPES, FHIR_XML_TYPES, HL7V2, HL7V2_TYPES, SHORT_TYPES

SourceKind = Literal["hl7v2", "fhir"]
"""Which path language a `Source` speaks."""

HEADER_KEYS: tuple[str, ...] = (
    "kind",                   # "hl7v2" | "fhir"
    "message_type",           # HL7 "ADT^A01" (MSH-9.1^MSH-9.2); FHIR resourceType
    "message_code",           # HL7 MSH-9.1 "ADT"; FHIR resourceType
    "trigger_event",          # HL7 MSH-9.2 "A01"; FHIR MessageHeader.eventCoding.code or ""
    "message_structure",      # HL7 MSH-9.3 "ADT_A01"; FHIR ""
    "control_id",             # HL7 MSH-10; FHIR resource id / message Bundle identifier
    "sending_application",    # HL7 MSH-3.1; FHIR MessageHeader.source.software or ""
    "sending_facility",       # HL7 MSH-4.1; FHIR MessageHeader.source.name or ""
    "receiving_application",  # HL7 MSH-5.1; FHIR ""
    "receiving_facility",     # HL7 MSH-6.1; FHIR MessageHeader.destination[0].name or ""
    "version",                # HL7 MSH-12.1 "2.5.1"; FHIR release "R4B" / "R5"
    "processing_id",          # HL7 MSH-11 "P"; FHIR ""
    "charset",                # HL7 MSH-18 first repetition; FHIR ""
    "resource_type",          # HL7 ""; FHIR resourceType
)
"""Keys every `Source.header` carries (value ``""`` when not applicable or absent)."""


@runtime_checkable
class Source(Protocol):
    """Read-only access to one parsed message (or one item of a repeating group within it)."""

    @property
    def kind(self) -> SourceKind:
        """``"hl7v2"`` or ``"fhir"``: the language of paths given to this source."""
        ...

    @property
    def header(self) -> Mapping[str, str]:
        """Routing facts, keys as in `HEADER_KEYS`; children share their parent's header."""
        ...

    def get(self, path: str) -> str | None:
        """Return the first non-empty value at ``path``, ``None`` when absent or empty."""
        ...

    def get_all(self, path: str) -> list[str]:
        """Return every non-empty value at ``path`` in message order."""
        ...

    def children(self, group_path: str) -> list[Source]:
        """Return one relative sub-source per item of the repeating group at ``group_path``."""
        ...


HL7_CONTENT_TYPES = HL7V2_TYPES | {k for k, v in SHORT_TYPES.items() if v == HL7V2}
FHIR_CONTENT_TYPES = FHIR_JSON_TYPES | FHIR_XML_TYPES | {k for k, v in SHORT_TYPES.items() if v != HL7V2}


def open_source(payload: bytes | str, *, content_type: str, fhir_release: str = "R4B") -> Source:
    """Parse ``payload`` by ``content_type`` and return it as a `Source`.

    HL7 v2 bytes are decoded with the charset declared in MSH-18 (`engine.hl7v2.charset`).
    Raises `engine.errors.Hl7ParseError`, `CharsetError` or `FhirParseError` for bad payloads, and
    ``ValueError`` for a content type that is neither HL7 v2 nor FHIR.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in HL7_CONTENT_TYPES:
        from engine.hl7v2.charset import decode, sniff_charset
        from engine.hl7v2.er7 import Er7Message

        text = payload if isinstance(payload, str) else decode(payload, sniff_charset(payload))
        return Er7Message.parse(text)
    if ctype in FHIR_CONTENT_TYPES:
        from engine.fhir.parse import parse_fhir_data
        from engine.fhir.source import FhirSource

        _, data = parse_fhir_data(payload, content_type=ctype, release=fhir_release)
        return FhirSource(data, release=fhir_release)
    raise ValueError(f"content type {content_type!r} is neither HL7 v2 nor FHIR")
