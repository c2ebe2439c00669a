"""`FhirSource`: a FHIR resource (or one element inside it) seen through `engine.message_view.Source`.

Paths are FHIRPath (`engine.fhir.path`). Primitive results become their FHIR JSON text: booleans
``true``/``false``, numbers as ``str()``, dates/times as their ISO strings; complex results (a whole
``HumanName``) are skipped, so a path must reach a primitive to produce a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from engine.fhir.parse import FhirResource, to_dict
from engine.fhir.path import evaluate
from engine.message_view import HEADER_KEYS, Source


def as_text(value: Any) -> str | None:
    """FHIR JSON text of one FHIRPath result item; ``None`` for complex elements and empty text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dict | list) or value is None:
        return None
    text = str(value)  # fhirpathpy FP_DateTime / FP_Quantity / ... render as FHIRPath literals
    return text or None


class FhirSource:
    """A FHIR resource or element as a `Source` (``kind == "fhir"``)."""

    __slots__ = ("_header", "data", "release")

    kind: Literal["fhir"] = "fhir"

    def __init__(self, data: dict[str, Any], *, release: str = "R4B",
                 header: Mapping[str, str] | None = None) -> None:
        self.data, self.release = data, release
        self._header = header if header is not None else fhir_header(data, release)

    @classmethod
    def from_resource(cls, resource: FhirResource, *, release: str = "R4B") -> FhirSource:
        """Wrap a parsed fhir.resources model."""
        return cls(to_dict(resource), release=release)

    def get(self, path: str) -> str | None:
        """First primitive result of FHIRPath ``path`` as text, ``None`` when there is none."""
        for item in evaluate(self.data, path, release=self.release):
            text = as_text(item)
            if text is not None:
                return text
        return None

    def get_all(self, path: str) -> list[str]:
        """Every primitive result of ``path`` as text, in document order."""
        out = []
        for item in evaluate(self.data, path, release=self.release):
            text = as_text(item)
            if text is not None:
                out.append(text)
        return out

    def children(self, group_path: str) -> list[Source]:
        """One `FhirSource` per complex element ``group_path`` yields (``Observation.component``)."""
        return [FhirSource(item, release=self.release, header=self._header)
                for item in evaluate(self.data, group_path, release=self.release)
                if isinstance(item, dict)]

    @property
    def header(self) -> Mapping[str, str]:
        """Routing facts (`engine.message_view.HEADER_KEYS`); a child shares its resource's header."""
        return self._header

    def __repr__(self) -> str:
        return f"<FhirSource {self._header.get('resource_type') or 'element'}>"


def fhir_header(data: dict[str, Any], release: str) -> dict[str, str]:
    """`Source.header` for FHIR JSON data; message Bundles are described by their MessageHeader."""
    header = dict.fromkeys(HEADER_KEYS, "")
    rtype = str(data.get("resourceType") or "")
    header.update(kind="fhir", message_type=rtype, message_code=rtype, resource_type=rtype,
                  version=release, control_id=str(data.get("id") or ""))
    if rtype == "Bundle" and data.get("type") == "message":
        ident = data.get("identifier") or {}
        if ident.get("value"):
            header["control_id"] = str(ident["value"])
        for entry in data.get("entry") or []:
            res = entry.get("resource") or {}
            if res.get("resourceType") == "MessageHeader":
                source = res.get("source") or {}
                dest = (res.get("destination") or [{}])[0]
                header.update(trigger_event=str((res.get("eventCoding") or {}).get("code") or ""),
                              sending_facility=str(source.get("name") or ""),
                              sending_application=str(source.get("software") or ""),
                              receiving_facility=str(dest.get("name") or ""))
                break
    return header
