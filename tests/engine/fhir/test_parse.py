"""parse_fhir (JSON and XML, FHIR element paths in errors) and Bundle entries (engine.fhir.bundle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import FhirParseError
from engine.fhir.bundle import entries
from engine.fhir.parse import parse_fhir, to_dict

FHIR = Path(__file__).resolve().parents[2] / "samples" / "fhir"


def load(name: str) -> bytes:
    """Raw bytes of one FHIR sample."""
    return (FHIR / name).read_bytes()


def test_patient_json_parses_with_chinese_name_and_citizen_id() -> None:
    """The R4B Patient sample keeps its 身份证 identifier and Chinese name."""
    patient = parse_fhir(load("patient_zh.json"), content_type="application/fhir+json")
    data = to_dict(patient)
    assert data["resourceType"] == "Patient"
    assert data["identifier"][0] == {
        "use": "official", "system": "urn:oid:2.16.156.10011.1.3", "value": "330203198503120171",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}],
                 "text": "居民身份证"}}
    assert data["name"][0]["text"] == "王建国" and data["birthDate"] == "1985-03-12"


def test_patient_xml_gives_the_same_values_as_json() -> None:
    """XML (via lxml) and JSON of the same patient agree on the elements both contain."""
    xml = to_dict(parse_fhir(load("patient_zh.xml"), content_type="application/fhir+xml"))
    js = to_dict(parse_fhir(load("patient_zh.json"), content_type="json"))
    for key in ("id", "gender", "birthDate", "active", "managingOrganization"):
        assert xml[key] == js[key]
    assert xml["name"][0] == js["name"][0]
    assert xml["address"][0]["line"] == ["中山西路138号", "3幢502室"]


def test_r5_release_uses_the_root_models() -> None:
    """release='R5' builds fhir.resources root (R5) models."""
    patient = parse_fhir(load("patient_zh.json"), content_type="json", release="R5")
    assert type(patient).__module__ == "fhir.resources.patient"


def test_invalid_birthdate_is_reported_at_patient_birthdate() -> None:
    """A month 13 birthDate gives an issue at the FHIR path Patient.birthDate, JSON or XML."""
    with pytest.raises(FhirParseError) as info:
        parse_fhir('{"resourceType": "Patient", "birthDate": "1985-13-12"}', content_type="json")
    assert [p for p, _ in info.value.issues] == ["Patient.birthDate"]
    assert "Patient.birthDate" in info.value.reason
    assert "1985-13-12" not in info.value.reason  # values may be patient data
    xml = b'<Patient xmlns="http://hl7.org/fhir"><birthDate value="1985-13-12"/></Patient>'
    with pytest.raises(FhirParseError) as info:
        parse_fhir(xml, content_type="xml")
    assert [p for p, _ in info.value.issues] == ["Patient.birthDate"]


def test_nested_errors_name_indexes_in_the_path() -> None:
    """Errors inside a bundle entry are located as Bundle.entry[0].resource.<element>."""
    raw = ('{"resourceType":"Bundle","type":"batch","entry":[{"resource":'
           '{"resourceType":"Patient","name":[{"given":[3]}]}}]}')
    with pytest.raises(FhirParseError) as info:
        parse_fhir(raw, content_type="json")
    assert info.value.issues[0][0] == "Bundle.entry[0].resource.name[0].given[0]"


@pytest.mark.parametrize(
    ("raw", "content_type", "reason"),
    [
        ('{"resourceType": "Patientt"}', "json", "unknown FHIR resourceType 'Patientt' (FHIR R4B)"),
        ('{"resourceType": "HumanName"}', "json", "unknown FHIR resourceType 'HumanName' (FHIR R4B)"),
        ('{"resourceType": "Observation", "valueQuantity": {"value": NaN}}', "json",
         "malformed JSON: NaN is not a JSON number"),
        ('{"id": "1"}', "json", 'FHIR JSON has no "resourceType"'),
        ("[1, 2]", "json", "FHIR JSON must be an object, got a list"),
        ('{"resourceType": "Patient",\n  "birthDate": }', "json",
         "malformed JSON at line 2 column 16: Expecting value"),
        ('<Patient xmlns="http://hl7.org/fhir"><id value="1"/></Pat', "xml",
         "malformed XML at line 1 column 58: expected '>'"),
        ('<Patient><id value="1"/></Patient>', "xml",
         "XML root <Patient> is not in the FHIR namespace http://hl7.org/fhir"),
        ('<Patient xmlns="http://hl7.org/fhir"><colour value="x"/></Patient>', "xml",
         "FHIR XML Patient has an unknown element <colour>"),
        ("MSH|^~\\&|", "text/plain", "content type 'text/plain' is not FHIR JSON or XML"),
    ],
)
def test_bad_payloads_give_a_clear_reason(raw: str, content_type: str, reason: str) -> None:
    """Unknown types, malformed JSON/XML (with line and column) and wrong content types."""
    with pytest.raises(FhirParseError) as info:
        parse_fhir(raw, content_type=content_type)
    assert info.value.reason == reason
    assert info.value.issues


def split(text: str) -> list[str]:
    """Resource types of the entries `engine.fhir.bundle.entries` routes one by one."""
    return [e.resource["resourceType"] for e in entries(to_dict(parse_fhir(text, content_type="json")))]


def test_transaction_bundle_splits_into_its_resources() -> None:
    """Each entry.resource of a transaction is routed on its own."""
    assert split(load("bundle_transaction.json")) == ["Patient", "Encounter", "Condition"]


def test_collection_and_message_bundles_split_and_single_resources_do_not() -> None:
    """collection/message bundles split; a Patient or a document bundle stays one unit."""
    assert split(load("bundle_diagnostic_report.json")) == ["DiagnosticReport"] + ["Observation"] * 4
    assert split(load("bundle_message.json")) == ["MessageHeader", "Patient"]
    assert split(load("patient_zh.json")) == []
    assert split('{"resourceType":"Bundle","type":"document"}') == []


def test_searchset_outcome_entries_are_left_out() -> None:
    """A searchset's OperationOutcome entry (search.mode=outcome) is not routed."""
    raw = ('{"resourceType":"Bundle","type":"searchset","entry":['
           '{"resource":{"resourceType":"Patient","id":"a"},"search":{"mode":"match"}},'
           '{"resource":{"resourceType":"OperationOutcome","issue":[{"severity":"warning",'
           '"code":"informational"}]},"search":{"mode":"outcome"}}]}')
    assert split(raw) == ["Patient"]


@pytest.mark.parametrize("name", sorted(p.name for p in FHIR.iterdir()))
def test_every_fhir_sample_parses(name: str) -> None:
    """All FHIR samples are valid R4B."""
    parse_fhir(load(name), content_type="xml" if name.endswith(".xml") else "json")


def test_unknown_resource_type_inside_a_bundle_is_located() -> None:
    """fhir.resources fails with a bare KeyError there; we name the entry instead."""
    raw = ('{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient"}},'
           '{"resource":{"resourceType":"Observashun","status":"final"}}]}')
    with pytest.raises(FhirParseError) as info:
        parse_fhir(raw, content_type="json")
    assert info.value.issues == [
        ("Bundle.entry[1].resource.resourceType", "unknown resourceType 'Observashun'")]
