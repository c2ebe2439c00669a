"""Bundles as real senders send them: entries, DELETE requests, the sender, derived identifiers.

Shared by the intake (channels/payload.py splits a Bundle into one stored message per entry) and
the router (engine/mapping/router.py routes a Bundle stored whole), so both read a Bundle the same way.

* `entries`: the entries to route, in order. An entry with a ``resource`` is itself; an entry that is
  only a ``request`` with method ``DELETE`` (FHIR R4B §3.1.0.1.4 transaction/batch: a delete has no
  resource) becomes a stub of the resource it deletes, read from ``request.url``: ``Patient/123`` →
  ``{"resourceType": "Patient", "id": "123"}``; a conditional delete ``Patient?identifier=sys|val``
  → ``{"resourceType": "Patient", "identifier": [{"system": "sys", "value": "val"}]}``. Its operation
  is ``delete`` (docs/mapping.md, The envelope). Other request-only entries (GET, HEAD: a query) carry
  no data and are skipped, as are searchset entries with ``search.mode = outcome``.
* `sender`: the organisation a message names: MessageHeader.source.name (message Bundles), else
  ``meta.source`` (its last ``/``, ``#`` or ``:`` segment).
* `with_business_identifier`: a resource without a business identifier gets a deterministic one,
  ``system`` `DERIVED_SYSTEM`, ``value`` the first 20 hex digits of SHA-256 over
  ``<source organisation>|<resourceType>/<id>``, so a resend of the same resource from the same
  sender gets the same identifier, and the same id from two senders does not collide (20 characters,
  80 bits: the shortest record number it fills, report_no AN..20 of the lab and exam report datasets,
  as well as the AN..32 of 接种记录编号 and the other record numbers). Resources that other records
  reference by id (Patient, Practitioner, Organization …: `REFERENCED_BY_ID`) keep their id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.errors import FhirParseError

SPLIT_BUNDLE_TYPES = frozenset({"transaction", "batch", "message", "collection", "searchset"})
"""Bundle types whose entries are routed one by one (FHIR R4B Bundle.type, value set bundle-type)."""
DERIVED_SYSTEM = "urn:yonglink:derived-identifier"
"""``Identifier.system`` of an identifier yonglink derived (the sender gave none)."""
DERIVED_LENGTH = 20
"""Hex digits of a derived identifier: fits report_no (AN..20, schemas/ningbo/medical/lab_report and
exam_report), the shortest record-number field a derived identifier is read into."""
REFERENCED_BY_ID = frozenset({"Patient", "Practitioner", "PractitionerRole", "Organization", "Location",
                              "RelatedPerson", "Device", "Group", "HealthcareService", "Endpoint",
                              "Medication", "Substance"})
"""Resources other records point at with ``Type/<id>`` references (Condition.subject → Patient/<id>,
read by routes as the patient's id): their id is kept as it is, never replaced by a derived one."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One routable entry of a Bundle: its index, resource (or DELETE stub) and request method."""

    index: int
    resource: dict[str, Any]
    method: str | None = None
    url: str | None = None


def entries(bundle: Mapping[str, Any], *, known: Any = None) -> list[Entry]:
    """The routable entries of a splittable Bundle (see the module docstring); [] for other resources.

    ``known(resource_type)`` raises `FhirParseError` for an unknown type (a DELETE URL naming one).
    """
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") not in SPLIT_BUNDLE_TYPES:
        return []
    out: list[Entry] = []
    for i, entry in enumerate(bundle.get("entry") or []):
        if not isinstance(entry, Mapping):
            continue
        if (entry.get("search") or {}).get("mode") == "outcome":
            continue
        request = entry.get("request") or {}
        method = str(request.get("method") or "").upper() or None
        url = request.get("url")
        resource = entry.get("resource")
        if isinstance(resource, dict):
            out.append(Entry(i, resource, method, url))
        elif method == "DELETE":
            out.append(Entry(i, delete_stub(str(url or ""), i, known), method, url))
    return out


def delete_stub(url: str, index: int, known: Any = None) -> dict[str, Any]:
    """The resource a DELETE ``request.url`` names, as a stub; `FhirParseError` when it names none."""
    where = f"Bundle.entry[{index}].request.url"
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    stub: dict[str, Any]
    if parts.query and segments:  # conditional delete: Patient?identifier=system|value
        stub = {"resourceType": segments[-1]}
        idents = []
        for token in parse_qs(parts.query).get("identifier", []):
            system, bar, value = token.rpartition("|")
            idents.append({"system": system, "value": value} if bar and system else {"value": value})
        if not idents:
            raise FhirParseError("a conditional DELETE must select by identifier",
                                 issues=[(where, "expected Type?identifier=system|value")])
        stub["identifier"] = idents
    elif len(segments) >= 2 and segments[-2][:1].isupper():
        stub = {"resourceType": segments[-2], "id": segments[-1]}
    else:
        raise FhirParseError("a DELETE entry's request.url must name Type/id or Type?identifier=...",
                             issues=[(where, "expected Type/id or Type?identifier=system|value")])
    if known is not None:
        try:
            known(stub["resourceType"])
        except FhirParseError:
            raise FhirParseError(f"DELETE of unknown resource type {stub['resourceType']!r}",
                                 issues=[(where, f"unknown resourceType {stub['resourceType']!r}")]) from None
    return stub


def org_from_uri(uri: str) -> str:
    """`meta.source` → an organisation code: the last segment of a URI / OID URN."""
    for sep in ("#", "/", ":"):
        if sep in uri.rstrip(sep):
            uri = uri.rstrip(sep).rsplit(sep, 1)[1]
    return uri


def sender(data: Mapping[str, Any]) -> str:
    """The organisation a resource or Bundle names as its sender (MessageHeader, meta.source), or ""."""
    if data.get("resourceType") == "Bundle" and data.get("type") == "message":
        for entry in data.get("entry") or []:
            res = entry.get("resource") or {} if isinstance(entry, Mapping) else {}
            if res.get("resourceType") == "MessageHeader":
                name = (res.get("source") or {}).get("name")
                if name:
                    return str(name)
                break
    source = (data.get("meta") or {}).get("source")
    return org_from_uri(source) if isinstance(source, str) and source else ""


def derived_identifier(resource_type: str, resource_id: str, org: str) -> str:
    """The deterministic business identifier of a resource its sender gave none (module docstring)."""
    text = f"{org}|{resource_type}/{resource_id}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DERIVED_LENGTH]


@lru_cache(maxsize=1024)
def identifier_shape(resource_type: str, release: str) -> str | None:
    """``list`` / ``single`` for the resource's ``identifier`` element, None when it has none."""
    from engine.fhir.parse import model_class

    try:
        field = model_class(resource_type, release).model_fields.get("identifier")
    except FhirParseError:
        return None
    if field is None:
        return None
    return "list" if "List" in str(field.annotation) else "single"


def with_business_identifier(data: dict[str, Any], org: str, release: str = "R4B") -> dict[str, Any]:
    """``data`` with a derived identifier when it has an id and no identifier; else ``data`` itself."""
    rtype, rid = data.get("resourceType"), data.get("id")
    if (not isinstance(rtype, str) or not rid or data.get("identifier") or rtype == "Bundle"
            or rtype in REFERENCED_BY_ID):
        return data
    shape = identifier_shape(rtype, release)
    if shape is None:
        return data
    ident = {"system": DERIVED_SYSTEM, "value": derived_identifier(rtype, str(rid), org)}
    return {**data, "identifier": [ident] if shape == "list" else ident}
