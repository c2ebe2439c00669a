"""Connectors, resolved from a config `type:` through two explicit dicts (no magic discovery)."""

from __future__ import annotations

from channels.base import Inbound, Outbound


def inbound_types() -> dict[str, type[Inbound]]:
    """Config `channels[].type` → class. Imported lazily so one connector's deps don't load all."""
    from channels import amqp, http, mllp

    types: dict[str, type[Inbound]] = {"mllp": mllp.MllpInbound, "http": http.HttpInbound,
                                       "amqp": amqp.AmqpInbound}
    return types


def outbound_types() -> dict[str, type[Outbound]]:
    """Config `destinations[].type` → class."""
    from channels import amqp_out, fhir_out, file_out, http_out, mllp_out, stub

    types: dict[str, type[Outbound]] = {
        "http": http_out.HttpOutbound, "fhir": fhir_out.FhirOutbound, "mllp": mllp_out.MllpOutbound,
        "amqp": amqp_out.AmqpOutbound, "file": file_out.FileOutbound, "stub": stub.StubOutbound,
    }
    return types
