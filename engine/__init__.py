"""yonglink: an HL7 v2 / FHIR integration engine for regional health platforms."""

from __future__ import annotations

__version__ = "0.1.0"
