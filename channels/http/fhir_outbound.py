"""FHIR destination: POST a resource to `<base_url>/<type>` or a transaction Bundle to `<base_url>`.

FHIR R4 RESTful API (§3.1.0): `create` is `POST [base]/[type]`, `update` is `PUT [base]/[type]/[id]`
(`method: PUT`, for resources that carry an id), and a `transaction`/`batch` Bundle is `POST [base]`.
An OperationOutcome in the reply (success or failure) is kept as the result text: its issues say what
the server did or why it refused. Status classification, retries and TLS/auth are the HTTP
destination's (channels/http/outbound.py).
"""

from __future__ import annotations

import dataclasses

import orjson

from channels.http.outbound import HttpOutbound, excerpt
from engine.errors import PermanentDeliveryError
from engine.types import FHIR_JSON, DeliveryItem, DeliveryResult


def operation_outcome_text(body: bytes) -> str | None:
    """`severity code: diagnostics` per issue of an OperationOutcome body; None if it is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or doc.get("resourceType") != "OperationOutcome":
        return None
    parts = []
    for issue in doc.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        detail = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        parts.append(f"{issue.get('severity', '?')} {issue.get('code', '?')}: {detail}".strip())
    return "OperationOutcome: " + "; ".join(parts)


class FhirOutbound(HttpOutbound):
    """Sends FHIR JSON; the target URL follows from the resource type (and id for `method: PUT`)."""

    def target(self, item: DeliveryItem) -> tuple[str, str]:
        base = self.url.rstrip("/")
        try:
            doc = orjson.loads(item.payload)
        except orjson.JSONDecodeError:
            raise PermanentDeliveryError("fhir destination: payload is not JSON") from None
        rtype = doc.get("resourceType") if isinstance(doc, dict) else None
        if not isinstance(rtype, str) or not rtype:
            raise PermanentDeliveryError("fhir destination: payload has no resourceType")
        if rtype == "Bundle" and doc.get("type") in ("transaction", "batch"):
            return "POST", base
        if self.method == "PUT" and doc.get("id"):
            return "PUT", f"{base}/{rtype}/{doc['id']}"
        return "POST", f"{base}/{rtype}"

    def summarize(self, status: int, body: bytes, content_type: str) -> str:
        return operation_outcome_text(body) or excerpt(body)

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        return await super().send(dataclasses.replace(item, content_type=FHIR_JSON))
