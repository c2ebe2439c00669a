"""What the HTTP channel answers besides ACKs: FHIR OperationOutcomes and its OpenAPI document.

OperationOutcome shape: FHIR R4B §6.1 (`issue.severity` from the IssueSeverity value set:
fatal | error | warning | information; `issue.code` from IssueType: invalid, structure, not-supported,
security, too-long, transient, informational, ...). `expression` carries the FHIR element path.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

import orjson

from engine.types import FHIR_JSON, FHIR_XML, HL7V2

Issue = tuple[str, str, str, str | None]
"""(severity, code, diagnostics, expression or None)."""


def operation_outcome(issues: list[Issue], *, xml: bool = False) -> tuple[bytes, str]:
    """Render an OperationOutcome as FHIR JSON (default) or XML; returns (body, content type)."""
    if xml:
        parts = ['<OperationOutcome xmlns="http://hl7.org/fhir">']
        for severity, code, text, expression in issues:
            parts.append(f"<issue><severity value={quoteattr(severity)}/><code value={quoteattr(code)}/>"
                         f"<diagnostics value={quoteattr(text)}/>")
            if expression:
                parts.append(f"<expression value={quoteattr(expression)}/>")
            parts.append("</issue>")
        parts.append("</OperationOutcome>")
        return "".join(parts).encode(), FHIR_XML + "; charset=utf-8"
    out: list[dict[str, Any]] = []
    for severity, code, text, expression in issues:
        item: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
        if expression:
            item["expression"] = [expression]
        out.append(item)
    return orjson.dumps({"resourceType": "OperationOutcome", "issue": out}), FHIR_JSON + "; charset=utf-8"


def openapi(base: str, *, auth: bool, max_body_bytes: int, api_key_header: str = "X-API-Key"
            ) -> dict[str, Any]:
    """OpenAPI 3.1 description of the channel's endpoints (served at `{base}/openapi.json`)."""
    outcome = {"description": "OperationOutcome", "content": {
        FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}},
        FHIR_XML: {"schema": {"type": "string"}}}}
    fhir_body = {"required": True, "content": {FHIR_JSON: {"schema": {"type": "object"}},
                                               FHIR_XML: {"schema": {"type": "string"}}}}
    common = {
        "400": {**outcome, "description": "invalid FHIR: one issue per invalid element path"},
        "401": {"description": "missing or invalid credentials"},
        "403": {"description": "client certificate not allowed"},
        "413": {"description": f"body larger than {max_body_bytes} bytes"},
        "415": {"description": "unsupported content type"},
        "503": {"description": "the store could not commit; retry later"},
    }
    idem = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"},
            "description": "a retry with the same key is answered from the store, never stored twice"}
    fhir_op = {
        "summary": "Submit a FHIR resource or Bundle",
        "parameters": [idem],
        "requestBody": fhir_body,
        "responses": {"201": {**outcome, "description": "stored (informational issue names the id)"},
                      "200": {**outcome, "description": "already stored (idempotent retry)"}, **common},
    }
    typed = {**fhir_op, "parameters": [idem, {"name": "resourceType", "in": "path", "required": True,
                                              "schema": {"type": "string"}}]}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "yonglink HTTP inbound channel", "version": "1"},
        "paths": {
            f"{base}/hl7v2": {"post": {
                "summary": "Submit an HL7 v2 message or batch (ER7)",
                "parameters": [idem],
                "requestBody": {"required": True, "content": {
                    HL7V2: {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}},
                "responses": {"200": {"description": "HL7 ACK: AA after the durable commit, AR + ERR for "
                                                     "unparseable input, AE when the store failed",
                                      "content": {HL7V2: {"schema": {"type": "string"}}}},
                              **{k: v for k, v in common.items() if k != "400"}},
            }},
            f"{base}/fhir": {"post": fhir_op},
            f"{base}/fhir/{{resourceType}}": {"post": typed},
        },
        "components": {"schemas": {"OperationOutcome": {
            "type": "object", "required": ["resourceType", "issue"],
            "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}}}}},
    }
    if auth:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": api_key_header}}
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    return doc
