"""Parse FHIR JSON / XML payloads into fhir.resources models, with errors a sender can act on.

R4B models come from ``fhir.resources.R4B``, R5 from the package root (fhir.resources 8.x).
XML goes through ``model_validate_xml``, which needs ``lxml`` (a project dependency for this reason).
Every failure is an `engine.errors.FhirParseError` whose ``issues`` are ``(FHIR element path, text)``
pairs, e.g. ``("Patient.birthDate", "Date value string does not match spec regex.")``; input values
are never copied into the reason (they may be patient data).
"""

from __future__ import annotations

import importlib
import json
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.errors import FhirParseError
from engine.types import FHIR_JSON_TYPES, FHIR_XML_TYPES

FhirResource = BaseModel
"""A parsed FHIR resource (a fhir.resources model: ``resource.get_resource_type()``)."""

RELEASES = {"R4B": "fhir.resources.R4B", "R5": "fhir.resources"}
JSON_TYPES = FHIR_JSON_TYPES | {"json"}
XML_TYPES = FHIR_XML_TYPES | {"xml"}
FHIR_NS = "http://hl7.org/fhir"


def model_class(resource_type: str, release: str = "R4B") -> type[BaseModel]:
    """The fhir.resources class for ``resource_type``; `FhirParseError` when there is none."""
    module = RELEASES.get(release)
    if module is None:
        raise ValueError(f"FHIR release {release!r} is not supported (use one of {sorted(RELEASES)})")
    getter = importlib.import_module(module).get_fhir_model_class
    try:
        cls: type[BaseModel] = getter(resource_type)
    except (ValueError, TypeError):
        cls = None  # type: ignore[assignment]
    if cls is None or not _is_resource(cls, release):
        raise FhirParseError(f"unknown FHIR resourceType {resource_type!r} (FHIR {release})",
                             issues=[("resourceType", f"{resource_type!r} is not a {release} resource")])
    return cls


def _is_resource(cls: type[BaseModel], release: str) -> bool:
    """True for resources (Patient), false for data types (HumanName) that share the lookup."""
    base = importlib.import_module(RELEASES[release] + ".resource").Resource
    return issubclass(cls, base)


def parse_fhir(raw: bytes | str, *, content_type: str, release: str = "R4B") -> FhirResource:
    """Parse one FHIR resource from JSON or XML ``raw``; raise `FhirParseError` when it is not valid."""
    return parse_fhir_data(raw, content_type=content_type, release=release)[0]


def parse_fhir_data(raw: bytes | str, *, content_type: str, release: str = "R4B"
                    ) -> tuple[FhirResource, dict[str, Any]]:
    """`parse_fhir`, plus the resource as FHIR JSON data for FHIRPath.

    For JSON the data is the payload itself, decimals kept exact (``0.10`` stays ``0.10``, which a
    float round trip would turn into ``0.1``); for XML it is the model's JSON form.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in JSON_TYPES:
        return _parse_json(raw, release)
    if ctype in XML_TYPES:
        resource = _parse_xml(raw if isinstance(raw, bytes) else raw.encode("utf-8"), release)
        return resource, to_dict(resource)
    raise FhirParseError(f"content type {content_type!r} is not FHIR JSON or XML",
                         issues=[("", "unsupported content type")])


def _parse_json(raw: bytes | str, release: str) -> tuple[FhirResource, dict[str, Any]]:
    try:
        data = json.loads(raw, parse_float=Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise FhirParseError(f"malformed JSON at {where}: {exc.msg}",
                             issues=[("", f"malformed JSON at {where}: {exc.msg}")]) from None
    except UnicodeDecodeError as exc:
        raise FhirParseError(f"FHIR JSON is not UTF-8: byte at offset {exc.start}",
                             issues=[("", "not UTF-8")]) from None
    if not isinstance(data, dict):
        raise FhirParseError(f"FHIR JSON must be an object, got a {type(data).__name__}",
                             issues=[("", "not a JSON object")])
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise FhirParseError('FHIR JSON has no "resourceType"',
                             issues=[("resourceType", "missing")])
    cls = model_class(rtype, release)
    try:
        return cls.model_validate(data), data
    except ValidationError as exc:
        raise _invalid(rtype, exc) from None
    except KeyError:  # fhir_core raises KeyError for an unknown *nested* resourceType
        issues = list(_unknown_nested(data, rtype, release))
        if not issues:
            raise
        listed = "; ".join(f"{p}: {t}" for p, t in issues[:5])
        raise FhirParseError(f"FHIR {rtype} is invalid: {listed}", issues=issues) from None


def _unknown_nested(node: Any, path: str, release: str) -> list[tuple[str, str]]:
    """(path, text) for every nested object whose resourceType has no model (entry, contained)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        rtype = node.get("resourceType")
        if isinstance(rtype, str) and "." in path:
            try:
                model_class(rtype, release)
            except FhirParseError:
                found.append((f"{path}.resourceType", f"unknown resourceType {rtype!r}"))
        for key, value in node.items():
            found += _unknown_nested(value, f"{path}.{key}", release)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _unknown_nested(value, f"{path}[{i}]", release)
    return found


def _no_constant(name: str) -> Any:
    raise FhirParseError(f"malformed JSON: {name} is not a JSON number", issues=[("", f"{name} in JSON")])


def _parse_xml(raw: bytes, release: str) -> FhirResource:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(raw, parser=parser)
    except etree.XMLSyntaxError as exc:
        line, col = exc.position
        why = str(exc.msg).split(", line ", 1)[0]
        raise FhirParseError(f"malformed XML at line {line} column {col}: {why}",
                             issues=[("", f"malformed XML at line {line} column {col}")]) from None
    qname = etree.QName(root)
    if qname.namespace != FHIR_NS:
        raise FhirParseError(f"XML root <{qname.localname}> is not in the FHIR namespace {FHIR_NS}",
                             issues=[(qname.localname, f"namespace must be {FHIR_NS}")])
    cls = model_class(qname.localname, release)
    try:
        return cls.model_validate_xml(raw, xmlparser=parser)  # type: ignore[attr-defined,no-any-return]
    except ValidationError as exc:
        raise _invalid(qname.localname, exc) from None
    except KeyError as exc:  # fhir.resources' XML mapper meets an element the model lacks
        raise FhirParseError(f"FHIR XML {qname.localname} has an unknown element <{exc.args[0]}>",
                             issues=[(qname.localname, f"unknown element <{exc.args[0]}>")]) from None
    except (ValueError, TypeError) as exc:  # other odd shapes the XML mapper cannot place
        raise FhirParseError(f"FHIR XML {qname.localname} could not be read: {exc}",
                             issues=[(qname.localname, str(exc))]) from None


def element_path(resource_type: str, loc: tuple[int | str, ...]) -> str:
    """Pydantic ``loc`` -> FHIR element path: ``('name', 0, 'given')`` -> ``Patient.name[0].given``."""
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "__root__":
            out += "." + (part[:-2] if part.endswith("__") else part)
    return out


def _invalid(resource_type: str, exc: ValidationError) -> FhirParseError:
    issues: list[tuple[str, str]] = []
    for err in exc.errors(include_input=False, include_url=False):
        text = str(err.get("msg", "invalid"))
        text = text.removeprefix("Value error, ")
        issues.append((element_path(resource_type, tuple(err.get("loc", ()))), text))
    listed = "; ".join(f"{p}: {t}" for p, t in issues[:5])
    more = f" (+{len(issues) - 5} more)" if len(issues) > 5 else ""
    return FhirParseError(f"FHIR {resource_type} is invalid: {listed}{more}", issues=issues)


def to_dict(resource: FhirResource) -> dict[str, Any]:
    """The resource as FHIR JSON data (for FHIRPath evaluation and storage)."""
    return resource.model_dump(mode="json", by_alias=True, exclude_none=True)
