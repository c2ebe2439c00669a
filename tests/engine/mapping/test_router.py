"""The Router as the engine uses it: parse, select, map, count quality and unmapped codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.mapping import build_router
from engine.mapping.router import Router
from engine.metrics import Metrics
from engine.types import FHIR_JSON, HL7V2, MessageState, StoredMessage

ROUTES = sorted(Path("mappings").glob("*.yaml"))
SAMPLES = Path("tests/samples")


@pytest.fixture(scope="module")
def router() -> Router:
    return build_router(ROUTES)


def stored(raw: bytes, content_type: str = HL7V2, channel: str = "c",
           charset: str | None = None) -> StoredMessage:
    return StoredMessage(id="M1", channel=channel, received_at=1710000000.0, content_type=content_type,
                         state=MessageState.RECEIVED, raw=raw, charset=charset)


def test_an_admission_feeds_every_route_that_matches(router: Router) -> None:
    """ADT^A01 (inpatient, one DG1) → person, inpatient admission and diagnosis records."""
    results = router.route(stored((SAMPLES / "adt_a01_v251_utf8.hl7").read_bytes()))
    assert sorted((r.route_id, r.dataset) for r in results) == [
        ("adt_diagnosis", "diagnosis"), ("adt_inpatient_admission", "inpatient_admission"),
        ("adt_person", "person")]
    assert all(r.record is not None and r.record["envelope"]["source_message_id"] == "M1" for r in results)


def test_an_unparseable_message_is_one_error_result(router: Router) -> None:
    """Bytes that are not HL7 give one `(parse)` result with the parser's reason."""
    [result] = router.route(stored(b"PID|1||x"))
    assert result.route_id == "(parse)" and result.error is not None and "expected \"MSH\"" in result.error


def test_a_channel_routes_list_restricts_the_routes_it_feeds() -> None:
    """With channel routes [adt_person] an A01 only yields the person record on that channel."""
    restricted = build_router(ROUTES, channel_routes={"his": frozenset({"adt_person"}), "other": None})
    raw = (SAMPLES / "adt_a01_v251_utf8.hl7").read_bytes()
    assert [r.route_id for r in restricted.route(stored(raw, channel="his"))] == ["adt_person"]
    assert len(restricted.route(stored(raw, channel="other"))) == 3


def test_each_bundle_entry_is_routed_and_repeat_results_get_numbered_ids(router: Router) -> None:
    """Two Patients in a transaction Bundle → two person results, ids adt… `fhir_patient_person` and `#2`."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "meta": {"source": "NBDYYY"}, "entry": [
        {"resource": {"resourceType": "Patient", "id": "a", "name": [{"text": "甲"}], "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "b", "name": [{"text": "乙"}], "gender": "female"},
         "request": {"method": "DELETE", "url": "Patient/b"}}]}
    results = router.route(stored(json.dumps(bundle).encode(), FHIR_JSON))
    assert [r.route_id for r in results] == ["fhir_patient_person", "fhir_patient_person#2"]
    assert [r.record["envelope"]["operation"] for r in results if r.record] == ["create", "delete"]


def test_quality_counts_mapped_failed_and_field_problems_per_organisation() -> None:
    """The snapshot counts per sending org and dataset, with missing and invalid fields."""
    r = build_router(ROUTES)
    r.route(stored((SAMPLES / "adt_a31_crlf.hl7").read_bytes()))
    bad = b"MSH|^~\\&|HIS|NBX|EMPI|NBWJW|20240301||ADT^A04|T1|P|2.5.1\rPID|1||P1^^^NBX^PI||Wang||19851345|Q"
    r.route(stored(bad))
    orgs = r.quality_snapshot()["organisations"]
    assert orgs["NBWJW"]["person"]["mapped"] == 1
    assert "patient_id" not in orgs["NBWJW"]["person"]["fields"]  # A31 falls back to PID-3.1
    assert orgs["NBWJW"]["person"]["fields"]["death_datetime"]["missing"] == 1
    assert orgs["NBX"]["person"]["failed"] == 1
    assert orgs["NBX"]["person"]["fields"]["birth_date"]["invalid"] == 1
    assert orgs["NBX"]["person"]["fields"]["sex_code"]["invalid"] == 1


def test_unmapped_codes_increment_the_metric_per_table() -> None:
    """An unknown PID-8 code counts once in yonglink_unmapped_codes{table=...}."""
    metrics = Metrics()
    r = build_router(ROUTES, metrics=metrics)
    r.route(stored(b"MSH|^~\\&|HIS|NBX|EMPI|NBWJW|20240301||ADT^A04|T1|P|2.5.1\rPID|1||P1^^^NBX^PI||Wang||19850312|Q"))
    value = metrics.registry.get_sample_value("yonglink_unmapped_codes_total",
                                              {"table": "hl7_0001_to_gbt_2261_1"})
    assert value == 1.0


def test_gb18030_bytes_are_decoded_with_the_declared_charset(router: Router) -> None:
    """MSH-18 GB 18030 (or the channel's charset) decodes Chinese names correctly."""
    [person] = [r for r in router.route(stored((SAMPLES / "adt_a01_gb18030.hl7").read_bytes()))
                if r.route_id == "adt_person"]
    assert person.record is not None and person.record["name"] == "孙丽华"


def test_validate_structure_rejects_messages_hl7apy_finds_malformed(tmp_path: Path) -> None:
    """`validate: structure` runs hl7apy strict validation first: ADT^A28 without PV1 fails, A31 passes."""
    route = tmp_path / "strict.yaml"
    route.write_text("id: strict\nmatch: {message_type: ADT^A28|ADT^A31}\nvalidate: structure\n"
                     "passthrough: true\n", encoding="utf-8")
    r = build_router([route])
    [ok] = r.route(stored((SAMPLES / "adt_a31_crlf.hl7").read_bytes()))
    assert ok.passthrough and ok.error is None
    [bad] = r.route(stored((SAMPLES / "adt_a28_zpi.hl7").read_bytes()))
    expected = "validate: structure: ValidationError: Missing required child ADT_A05.PV1"
    assert bad.error is not None and expected in bad.error


def test_a_batch_stored_whole_is_routed_message_by_message(router: Router) -> None:
    """An FHS/BHS batch of ADT^A04s yields one person result per message (ids adt_person, #2 ...)."""
    results = [r for r in router.route(stored((SAMPLES / "batch_adt_a04_fhs.hl7").read_bytes()))
               if r.route_id.startswith("adt_person")]
    assert len(results) >= 2 and results[1].route_id == "adt_person#2"


def test_match_channels_and_wildcard_message_types_select_routes(tmp_path: Path) -> None:
    """`match.channels` limits a route to its channels; `ADT^*` matches every ADT trigger."""
    route = tmp_path / "r.yaml"
    route.write_text("id: any_adt\nmatch: {channels: [his], message_type: 'ADT^*'}\npassthrough: true\n",
                     encoding="utf-8")
    r = build_router([route])
    raw = (SAMPLES / "adt_a03_lf.hl7").read_bytes()
    assert [x.route_id for x in r.route(stored(raw, channel="his"))] == ["any_adt"]
    assert r.route(stored(raw, channel="lab")) == []
    assert r.route(stored((SAMPLES / "oru_r01_v251_cbc.hl7").read_bytes(), channel="his")) == []


def test_a_fhirpath_failing_at_run_time_fails_only_that_route(tmp_path: Path) -> None:
    """A path that errors on this input (a function applied to several items) is that route's error."""
    route = tmp_path / "r.yaml"
    route.write_text("id: fp\nmatch: {resource_type: Patient}\ntarget: person\nfields:\n"
                     "  name: Patient.name.text.substring(0, 2)\n  sex_code: {const: '1'}\n",
                     encoding="utf-8")
    r = build_router([route])
    patient = {"resourceType": "Patient", "meta": {"source": "X"},
               "name": [{"text": "甲乙"}, {"text": "丙丁"}]}
    [result] = r.route(stored(json.dumps(patient).encode(), FHIR_JSON))
    assert result.error is not None and result.error.startswith(f"{route}:5 name: FHIRPath")
