"""FHIRPath evaluation (cached, syntax-checked) and FhirSource as engine.source.Source."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import PathSyntaxError
from engine.fhir.path import compile_fhirpath, evaluate
from engine.fhir.source import FhirSource
from engine.message_view import HEADER_KEYS, Source, open_source

FHIR = Path(__file__).resolve().parents[2] / "samples" / "fhir"
CITIZEN_ID = "Patient.identifier.where(system='urn:oid:2.16.156.10011.1.3').value"


@pytest.fixture
def patient() -> FhirSource:
    """The Patient sample as a Source."""
    src = open_source((FHIR / "patient_zh.json").read_bytes(), content_type="application/fhir+json")
    assert isinstance(src, FhirSource)
    return src


def test_evaluate_selects_the_citizen_id() -> None:
    """evaluate() runs FHIRPath on JSON data."""
    data = {"resourceType": "Patient", "identifier": [
        {"system": "x", "value": "1"}, {"system": "urn:oid:2.16.156.10011.1.3", "value": "3302"}]}
    assert evaluate(data, CITIZEN_ID) == ["3302"]


def test_compiled_expressions_are_cached() -> None:
    """The same expression and release compile once."""
    assert compile_fhirpath(CITIZEN_ID) is compile_fhirpath(CITIZEN_ID)


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [("Patient.name.where(", "column 20"), ("Patient..name", "column 9"),
     ("Patient.name )", "column 14: unexpected ')'"), ("", "empty"),
     ("Patient.name.nosuchfunction()", "failed")],
)
def test_bad_expressions_raise_path_syntax_error(expr: str, fragment: str) -> None:
    """fhirpathpy alone ignores syntax errors; we report them with the column."""
    with pytest.raises(PathSyntaxError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        evaluate({"resourceType": "Patient"}, expr)


def test_source_reads_primitives_as_text(patient: FhirSource) -> None:
    """get/get_all return FHIR JSON text for primitives and skip complex elements."""
    assert isinstance(patient, Source) and patient.kind == "fhir"
    assert patient.get(CITIZEN_ID) == "330203198503120171"
    assert patient.get("Patient.active") == "true"
    assert patient.get("Patient.birthDate") == "1985-03-12"
    assert patient.get("Patient.name") is None
    assert patient.get_all("Patient.name.family") == ["王", "WANG"]
    assert patient.get("Patient.deceasedBoolean") is None
    assert patient.header["resource_type"] == "Patient"
    assert set(patient.header) == set(HEADER_KEYS)


def test_children_give_one_relative_source_per_component() -> None:
    """Observation.component children read relative FHIRPath such as valueQuantity.value."""
    bundle = open_source((FHIR / "bundle_diagnostic_report.json").read_bytes(), content_type="json")
    entries = bundle.children("Bundle.entry.resource")
    assert len(entries) == 5 and entries[0].get("DiagnosticReport.conclusion") == "白细胞升高，血小板减少"
    bp = entries[-1]
    rows = bp.children("Observation.component")
    assert [(r.get("code.coding.code"), r.get("valueQuantity.value")) for r in rows] == [
        ("8480-6", "138"), ("8462-4", "86")]
    assert rows[0].header is bp.header


def test_message_bundle_header_comes_from_messageheader() -> None:
    """A message Bundle's header names the event, sender, receiver and message identifier."""
    src = open_source((FHIR / "bundle_message.json").read_bytes(), content_type="json")
    h = src.header
    assert (h["message_type"], h["trigger_event"]) == ("Bundle", "A04")
    assert h["control_id"] == "MZ20240305083012007"
    assert (h["sending_facility"], h["sending_application"]) == ("宁波市第二医院", "MZGH")
    assert h["receiving_facility"] == "宁波市全民健康信息平台"


def test_json_decimals_keep_their_written_precision() -> None:
    """valueQuantity.value 0.10 reads as "0.10" (a float round trip would give "0.1")."""
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"PCT"},'
           b'"valueQuantity":{"value":0.10,"unit":"%"}}')
    src = open_source(raw, content_type="application/fhir+json")
    assert src.get("Observation.valueQuantity.value") == "0.10"
    assert src.get("Observation.valueQuantity.where(value > 0.05).unit") == "%"
