"""Connectors, resolved from a config `type:` through two explicit dicts (no magic discovery)."""

from __future__ import annotations

from channels.base import Inbound, Outbound


def inbound_types() -> dict[str, type[Inbound]]:
    """Config `channels[].type` → class. Imported lazily so one connector's deps don't load all."""
    from channels.amqp import inbound as amqp
    from channels.file import inbound as file_in
    from channels.http import inbound as http
    from channels.mllp import inbound as mllp

    types: dict[str, type[Inbound]] = {"mllp": mllp.MllpInbound, "http": http.HttpInbound,
                                       "amqp": amqp.AmqpInbound, "file": file_in.FileInbound}
    return types


def outbound_types() -> dict[str, type[Outbound]]:
    """Config `destinations[].type` → class."""
    from channels import stub
    from channels.amqp import outbound as amqp_out
    from channels.export import outbound as export_out
    from channels.file import outbound as file_out
    from channels.http import fhir_outbound as fhir_out
    from channels.http import outbound as http_out
    from channels.mllp import outbound as mllp_out

    types: dict[str, type[Outbound]] = {
        "http": http_out.HttpOutbound, "fhir": fhir_out.FhirOutbound, "mllp": mllp_out.MllpOutbound,
        "amqp": amqp_out.AmqpOutbound, "file": file_out.FileOutbound, "stub": stub.StubOutbound,
        "export": export_out.ExportOutbound,
    }
    return types
