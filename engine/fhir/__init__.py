"""FHIR support: parsing (fhir.resources, JSON and XML), Bundle entries (`bundle`), FHIRPath, `FhirSource`."""

from __future__ import annotations

from engine.fhir.parse import FhirResource, parse_fhir
from engine.fhir.path import evaluate
from engine.fhir.source import FhirSource

__all__ = ["FhirResource", "FhirSource", "evaluate", "parse_fhir"]
