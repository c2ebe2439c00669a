"""The Ningbo dataset schemas and the registry that validates records against them.

Example records live in tests/samples/records/<dataset>.json: hand-written after the dataset field lists
(person/patient identity shaped like the Beijing HL7 v2.5.1 samples; ID numbers carry a valid GB 11643
check character; names, phones and addresses are made up).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.datasets.registry import DatasetRegistry, iter_fields, markdown
from engine.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "schemas" / "ningbo"
RECORDS = ROOT / "tests" / "samples" / "records"
DATASETS = [
    "appointment", "chronic_followup", "diagnosis", "discharge_summary", "document_index", "exam_report",
    "immunization", "infectious_disease_report", "inpatient_admission", "inpatient_discharge",
    "inpatient_transfer", "lab_report", "medication_order", "newborn_visit", "organization",
    "outpatient_visit", "person", "person_merge", "practitioner", "prenatal_followup", "referral",
    "vital_sign",
]
AREAS = {"基础信息", "公共卫生", "医疗服务", "卫生资源", "电子病历"}
GB11643_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@pytest.fixture(scope="module")
def registry() -> DatasetRegistry:
    return DatasetRegistry.load(SCHEMAS)


def sample(dataset: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDS / f"{dataset}.json").read_text(encoding="utf-8"))
    return data


def gb11643_ok(number: str) -> bool:
    """GB 11643 check: weights on the first 17 digits, check char "10X98765432"[sum mod 11]."""
    total = sum(int(d) * w for d, w in zip(number[:17], GB11643_WEIGHTS, strict=True))
    return len(number) == 18 and number[:17].isdigit() and number[17] == "10X98765432"[total % 11]


def test_every_shipped_dataset_is_loaded(registry: DatasetRegistry) -> None:
    """The registry finds exactly the shipped datasets."""
    assert registry.datasets() == DATASETS


@pytest.mark.parametrize("path", sorted(SCHEMAS.rglob("*.schema.json")), ids=lambda p: p.name)
def test_every_schema_file_is_a_valid_2020_12_schema(path: Path) -> None:
    """Each schema file is a valid JSON Schema draft 2020-12 document with a yonglink $id."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == "https://yonglink.dev/schemas/ningbo/" + path.relative_to(SCHEMAS).as_posix()


@pytest.mark.parametrize("dataset", DATASETS)
def test_dataset_metadata_is_complete(registry: DatasetRegistry, dataset: str) -> None:
    """Each dataset has its id, version 1.0, a Chinese title, an area, and a closed data object."""
    ds = registry.get(dataset)
    assert (ds.id, ds.version) == (dataset, "1.0")
    assert ds.area in AREAS and ds.title
    assert ds.schema["additionalProperties"] is False
    assert "envelope" in ds.schema["required"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_field_has_title_and_de_and_coded_fields_name_their_domain(
        registry: DatasetRegistry, dataset: str) -> None:
    """Every property has title + x-de; a coded property (x-cv) has an enum, or a pattern when its code
    list is too large or not in the reference data; a field with an enum names its x-cv."""
    for name, info in iter_fields(registry.fields(dataset)):
        assert info.title and info.de, name
        if info.cv:
            assert info.enum or info.pattern, name
        if info.enum:
            assert info.cv, name


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_example_record_validates(registry: DatasetRegistry, dataset: str) -> None:
    """The example record of each dataset validates, and its envelope names the dataset."""
    record = sample(dataset)
    assert registry.validate(dataset, record) == []
    assert record["envelope"]["dataset"] == dataset


@pytest.mark.parametrize("dataset", DATASETS)
def test_example_id_numbers_carry_a_valid_gb_11643_check_character(dataset: str) -> None:
    """Example resident ID numbers (id_type_code 01) pass the GB 11643 check."""
    record = sample(dataset)
    if record.get("id_type_code") == "01":
        assert gb11643_ok(record["id_number"])


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_de_keyed_form_validates_and_converts_back(registry: DatasetRegistry, dataset: str) -> None:
    """to_de_keys renames fields to DE ids (envelope kept); the result passes the DE-keyed schema."""
    record = sample(dataset)
    de = registry.to_de_keys(dataset, record)
    assert de["envelope"] == record["envelope"]
    assert registry.validate(dataset, de, keys="de") == []
    assert registry.from_de_keys(dataset, de) == record


def test_lab_result_rows_are_de_keyed_too(registry: DatasetRegistry) -> None:
    """Rows inside lab_report.results are renamed to DE ids as well."""
    de = registry.to_de_keys("lab_report", sample("lab_report"))
    row = de["local:results"][0]
    assert row["DE04.30.019.00"] == "201" and row["DE04.30.017.00"] == "2"
    assert de["DE02.01.039.00"] == "测试患者"


def test_a_field_keyed_record_fails_the_de_keyed_schema(registry: DatasetRegistry) -> None:
    """Validating with keys='de' really checks DE keys: a field-keyed record is rejected."""
    issues = registry.validate("person", sample("person"), keys="de")
    assert any(i.message.startswith("unknown field(s)") for i in issues)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("birth_date", "19850230x", "does not match format D8"),
    ("birth_date", "19851301", "does not match format D8"),
    ("sex_code", "M", "not a code of GB/T 2261.1 (allowed: 0, 1, 2, 9)"),
    ("name", "名" * 51, "longer than 50 characters"),
    ("ethnicity_code", "HA", "not a code of GB/T 3304"),
])
def test_a_bad_person_field_is_reported_at_its_path(
        registry: DatasetRegistry, field: str, value: str, message: str) -> None:
    """A bad D8 date, an HL7 sex letter, a too-long name or a letter ethnicity code fail at that field."""
    record = sample("person") | {field: value}
    issues = registry.validate("person", record)
    assert [i.path for i in issues] == [f"/{field}"]
    assert issues[0].message.startswith(message)


def test_issue_messages_never_quote_the_value(registry: DatasetRegistry) -> None:
    """Messages describe the rule, not the patient data that broke it."""
    record = sample("person") | {"name": "张" * 60, "birth_date": "1985-06-12"}
    issues = registry.validate("person", record)
    assert len(issues) == 2
    assert all("张" not in i.message and "1985" not in i.message for i in issues)


def test_a_bad_row_in_lab_results_is_reported_with_its_index(registry: DatasetRegistry) -> None:
    """An unknown result flag and a bad DT15 in the second row point into results/1."""
    record = sample("lab_report")
    record["results"][1]["result_flag_code"] = "H"
    record["results"][1]["result_time"] = "2026-11-24 10:05"
    paths = [i.path for i in registry.validate("lab_report", record)]
    assert paths == ["/results/1/result_flag_code", "/results/1/result_time"]


def test_missing_identity_and_missing_companion_fields_are_named(registry: DatasetRegistry) -> None:
    """Without patient_id or id_number the record needs one of them; id_number needs id_type_code."""
    record = sample("person")
    del record["patient_id"], record["id_number"], record["name"]
    issues = registry.validate("person", record)
    assert ("", "needs one of: patient_id | id_number") in [(i.path, i.message) for i in issues]
    assert ("/name", "is required") in [(i.path, i.message) for i in issues]
    record = sample("person")
    del record["id_type_code"]
    assert [(i.path, i.message) for i in registry.validate("person", record)] == [
        ("/id_type_code", "is required when id_number is given")]


def test_envelope_must_name_this_dataset_and_a_known_operation(registry: DatasetRegistry) -> None:
    """The envelope is checked too: dataset id, operation and DT15 record time."""
    record = sample("person")
    record["envelope"] |= {"dataset": "lab_report", "operation": "upsert", "record_time": "20261124"}
    paths = [i.path for i in registry.validate("person", record)]
    assert paths == ["/envelope/dataset", "/envelope/operation", "/envelope/record_time"]


def test_unknown_fields_are_rejected(registry: DatasetRegistry) -> None:
    """additionalProperties is false, so a typo in a field name is caught."""
    issues = registry.validate("person", sample("person") | {"sex": "1"})
    assert [(i.path, i.message) for i in issues] == [("", "unknown field(s): sex")]


def test_an_unknown_dataset_lists_the_known_ones(registry: DatasetRegistry) -> None:
    """Asking for a dataset that does not exist raises ConfigError naming every known dataset."""
    with pytest.raises(ConfigError, match="unknown dataset 'patient'; known datasets: appointment, "):
        registry.validate("patient", {})


def test_fields_describe_de_domain_and_rows(registry: DatasetRegistry) -> None:
    """fields() gives the mapping validator titles, DE ids, value domains and row fields."""
    person = registry.fields("person")
    assert "envelope" not in person
    sex = person["sex_code"]
    assert (sex.title, sex.de, sex.cv, sex.enum, sex.required) == (
        "性别代码", "DE02.01.040.00", "GB/T 2261.1", ("0", "1", "2", "9"), True)
    results = registry.fields("lab_report")["results"]
    assert results.items is not None and results.items["unit"].de == "DE04.30.016.00"


def test_a_schema_field_without_de_is_a_config_error(tmp_path: Path) -> None:
    """A dataset field lacking x-de cannot be emitted DE-keyed, so loading fails and names it."""
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "x-dataset": "t", "type": "object",
           "properties": {"name": {"title": "姓名", "type": "string"}}}
    (tmp_path / "t.schema.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match="name: every field needs `title` and `x-de`"):
        DatasetRegistry.load(tmp_path)


def test_two_fields_sharing_a_de_id_is_a_config_error(tmp_path: Path) -> None:
    """Two fields of one object with the same x-de would collide when DE-keyed."""
    prop = {"title": "姓名", "x-de": "DE02.01.039.00", "type": "string"}
    doc = {"x-dataset": "t", "type": "object", "properties": {"a": prop, "b": prop}}
    (tmp_path / "t.schema.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"x-de DE02\.01\.039\.00 is also used by a"):
        DatasetRegistry.load(tmp_path)


def test_a_broken_json_schema_file_names_file_and_line(tmp_path: Path) -> None:
    """Invalid JSON is reported with its file and line."""
    (tmp_path / "t.schema.json").write_text('{\n  "x-dataset": "t",\n  oops\n}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"t\.schema\.json:3\)"):
        DatasetRegistry.load(tmp_path)


def test_validators_are_compiled_once_not_per_record(registry: DatasetRegistry) -> None:
    """validate() reuses the dataset's compiled validator object (the costly part is done at load)."""
    ds = registry.get("lab_report")
    before = (id(ds.validator), id(ds.de_validator))
    for _ in range(3):
        registry.validate("lab_report", sample("lab_report"))
    after = registry.get("lab_report")
    assert (id(after.validator), id(after.de_validator)) == before


def test_markdown_has_a_table_per_dataset(registry: DatasetRegistry) -> None:
    """markdown() renders one table per dataset with every field and its DE id."""
    text = markdown(registry)
    for dataset in DATASETS:
        assert f"### `{dataset}`" in text
    assert "| `sex_code` | 性别代码 | `DE02.01.040.00` | N1 | GB/T 2261.1: 0 未知的性别" in text
    assert "`results[].item_code`" in text


def test_the_sample_records_are_not_mutated_by_validation(registry: DatasetRegistry) -> None:
    """Validation and DE-keying leave the input record untouched."""
    record = sample("lab_report")
    snapshot = copy.deepcopy(record)
    registry.validate("lab_report", record)
    registry.to_de_keys("lab_report", record)
    assert record == snapshot



def test_docs_datasets_md_is_in_sync_with_the_schemas(registry: DatasetRegistry) -> None:
    """docs/datasets.md contains exactly what markdown() renders from the current schemas."""
    docs = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    assert markdown(registry) in docs


def test_de_keyed_schema_renames_one_of_requirements_too(registry: DatasetRegistry) -> None:
    """A DE-keyed diagnosis with neither an ICD-10 nor a TCM code fails, naming the DE ids."""
    record = sample("diagnosis")
    del record["diagnosis_code"]
    issues = registry.validate("diagnosis", registry.to_de_keys("diagnosis", record), keys="de")
    assert [(i.path, i.message) for i in issues] == [("", "needs one of: DE05.01.024.00 | DE05.10.130.00")]
