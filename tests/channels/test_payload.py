"""Inbound payload → InboundMessages: media types, batches, dedupe keys (channels/payload.py)."""

from __future__ import annotations

import orjson
import pytest

from channels.payload import Envelope, fhir_messages, hl7v2_items, media_type, payload_kind
from engine.errors import FhirParseError

ADT = "MSH|^~\\&|HIS|NBH|YL|NB|20240101||ADT^A01|{cid}|P|2.5.1\rPID|1||1\r"


@pytest.mark.parametrize(("header", "expected"), [
    ("text/plain", ("text/plain", None)),
    ("Text/Plain; Charset=\"GB18030\"", ("text/plain", "GB18030")),
    ("application/fhir+json;charset=utf-8; fhirVersion=4.3", ("application/fhir+json", "utf-8")),
    (None, ("", None)),
])
def test_media_type_splits_the_type_and_the_charset_parameter(header: str | None,
                                                              expected: tuple[str, str | None]) -> None:
    assert media_type(header) == expected


def test_payload_kind_knows_hl7v2_and_fhir_media_types_only() -> None:
    assert [payload_kind(t) for t in ("x-application/hl7-v2+er7", "application/fhir+xml", "image/png")] == \
        ["hl7v2", "fhir", None]


def test_an_hl7v2_message_is_keyed_by_msh4_and_msh10_like_mllp() -> None:
    [item] = hl7v2_items(ADT.format(cid="A1").encode(), Envelope(channel="c", received_at=0.0))
    assert item.error is None and item.inbound.dedupe_key == "NBH|A1"
    assert (item.inbound.sending_application, item.inbound.message_type) == ("HIS", "ADT^A01")


def test_a_batch_under_one_transport_key_gives_each_message_its_own_key() -> None:
    raw = (ADT.format(cid="B1") + ADT.format(cid="B2")).encode()
    items = hl7v2_items(raw, Envelope(channel="c", received_at=0.0, key="c:idem:k"))
    assert [i.inbound.dedupe_key for i in items] == ["c:idem:k#0", "c:idem:k#1"]
    assert [i.inbound.raw for i in items] == [ADT.format(cid="B1").encode(), ADT.format(cid="B2").encode()]


def test_bytes_invalid_in_the_declared_charset_are_one_rejected_item_keeping_the_raw_bytes() -> None:
    raw = ADT.format(cid="C1").encode() + b"\xff\xfe"
    [item] = hl7v2_items(raw, Envelope(channel="c", received_at=0.0), charset="UTF-8")
    assert item.error is not None and item.inbound.raw == raw and item.inbound.control_id == "C1"


def test_a_fhir_resource_with_id_and_version_is_keyed_by_its_history_url() -> None:
    body = orjson.dumps({"resourceType": "Patient", "id": "p1", "meta": {"versionId": "3"}})
    [msg] = fhir_messages(body, Envelope(channel="c", received_at=0.0), content_type="application/json")
    assert msg.dedupe_key == "c:Patient/p1/_history/3" and msg.content_type == "application/fhir+json"


def test_a_url_resource_type_that_differs_from_the_body_is_an_error_on_resource_type() -> None:
    body = orjson.dumps({"resourceType": "Patient"})
    with pytest.raises(FhirParseError) as info:
        fhir_messages(body, Envelope(channel="c", received_at=0.0), content_type="application/fhir+json",
                      expected_type="Observation")
    assert info.value.issues[0][0] == "resourceType"
