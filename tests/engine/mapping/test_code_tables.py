"""Code tables: the shipped YAML tables, lookups under each unmapped-code policy, and file:line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.datasets.registry import DatasetRegistry
from engine.errors import ConfigError, MappingError
from engine.mapping.code_tables import CodeTable, load_table, load_tables

ROOT = Path(__file__).resolve().parents[3]
TABLES = ROOT / "mappings" / "tables"

# table id → (dataset, field) whose enum every target code must belong to
FEEDS = {
    "hl7_0001_to_gbt_2261_1": ("person", "sex_code"),
    "hl7_0002_to_gbt_2261_2": ("person", "marital_status_code"),
    "gbt_3304_letter_to_numeric": ("person", "ethnicity_code"),
    "hl7_0203_to_cv02_01_101": ("person", "id_type_code"),
    "site_example_cx5_to_cv02_01_101": ("person", "id_type_code"),
    "abo_to_cv04_50_005": ("person", "abo_blood_type_code"),
    "rh_to_cv04_50_020": ("person", "rh_blood_type_code"),
    "hl7_0004_to_cv09_00_404": ("outpatient_visit", "patient_type_code"),
    "hl7_0052_to_diagnosis_type": ("diagnosis", "diagnosis_type_code"),
    "hl7_0162_to_cv06_00_102": ("immunization", "route_code"),
    "notifiable_disease_category": ("infectious_disease_report", "disease_category_code"),
    "hl7_0074_to_dicom_modality": ("exam_report", "modality_code"),
    "vital_sign_unit_to_ucum": ("vital_sign", "unit"),
    "hl7_0119_to_order_status": ("medication_order", "order_status_code"),
}


@pytest.fixture(scope="module")
def tables() -> dict[str, CodeTable]:
    return load_tables(TABLES)


@pytest.fixture(scope="module")
def registry() -> DatasetRegistry:
    return DatasetRegistry.load(ROOT / "schemas" / "ningbo")


def write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def test_every_shipped_table_loads(tables: dict[str, CodeTable]) -> None:
    """All shipped tables load, each under its own id, with source and target stated; the ones no route
    uses are checked here by FEEDS (the used ones by tests/mappings/test_code_domains.py)."""
    assert set(FEEDS) <= set(tables)
    for table in tables.values():
        assert table.source and table.target and table.description


@pytest.mark.parametrize("table_id", sorted(FEEDS))
def test_table_targets_are_codes_of_the_field_they_feed(
        tables: dict[str, CodeTable], registry: DatasetRegistry, table_id: str) -> None:
    """Every target code of a table is allowed by the enum of the dataset field it fills."""
    dataset, field = FEEDS[table_id]
    enum = registry.fields(dataset)[field].enum
    assert enum is not None
    assert set(tables[table_id].mapping.values()) <= set(enum)


def test_result_flag_targets_are_codes_of_the_lab_result_flag(
        tables: dict[str, CodeTable], registry: DatasetRegistry) -> None:
    """HL7 0078 flags land in the lab_report row field result_flag_code (1/2/3)."""
    rows = registry.fields("lab_report")["results"].items
    assert rows is not None and rows["result_flag_code"].enum is not None
    assert set(tables["hl7_0078_to_result_flag"].mapping.values()) <= set(rows["result_flag_code"].enum)


@pytest.mark.parametrize(("code", "expected"), [("M", "1"), ("F", "2"), ("U", "0"), ("O", "9"), ("2", "2"),
                                                ("0", "0"), ("9", "9")])
def test_sex_accepts_hl7_letters_and_gb_digits(
        tables: dict[str, CodeTable], code: str, expected: str) -> None:
    """HL7 0001 letters map to GB/T 2261.1, and GB digits (sent by some senders) pass as themselves."""
    assert tables["hl7_0001_to_gbt_2261_1"].lookup(code) == expected


def test_ethnicity_covers_all_56_groups_by_letter(tables: dict[str, CodeTable]) -> None:
    """GB/T 3304 letter codes for all 56 groups map to 01..56; HA is 01, JN (基诺族) is 56."""
    table = tables["gbt_3304_letter_to_numeric"]
    letters = {k: v for k, v in table.mapping.items() if k.isascii() and k.isalpha()}
    assert sorted(letters.values()) == [f"{n:02d}" for n in range(1, 57)]
    assert (table.lookup("HA"), table.lookup("JN"), table.lookup("汉族"), table.lookup("97")) == (
        "01", "56", "01", "97")


def test_marital_identifier_flag_and_blood_lookups(tables: dict[str, CodeTable]) -> None:
    """Spot checks: HL7 0002 M → 20, 0203 NNCHN → 01, 0078 H → 2 and empty → 1, ABO AB → 4, Rh + → 2."""
    assert tables["hl7_0002_to_gbt_2261_2"].lookup("M") == "20"
    assert tables["hl7_0203_to_cv02_01_101"].lookup("NNCHN") == "01"
    assert tables["site_example_cx5_to_cv02_01_101"].lookup("1") == "01"
    assert tables["hl7_0078_to_result_flag"].lookup("H") == "2"
    assert tables["hl7_0078_to_result_flag"].lookup(None) == "1"
    assert tables["abo_to_cv04_50_005"].lookup("AB") == "4"
    assert tables["rh_to_cv04_50_020"].lookup("+") == "2"


def test_unmapped_code_under_error_policy_raises_mapping_error(tmp_path: Path) -> None:
    """An unmapped code raises MappingError carrying the code, and is counted for the table."""
    table = load_table(write(tmp_path, """
        id: err_table
        map: {M: "1"}
    """))
    before = CodeTable.unmapped_counts["err_table"]
    with pytest.raises(MappingError, match="code table err_table: no mapping for code 'X'") as info:
        table.lookup("X")
    assert info.value.value == "X"
    assert CodeTable.unmapped_counts["err_table"] == before + 1


def test_unmapped_code_under_pass_policy_is_returned_unchanged(tmp_path: Path) -> None:
    """`unmapped: pass` returns the code as sent (and still counts it)."""
    table = load_table(write(tmp_path, """
        id: pass_table
        unmapped: pass
        map: {M: "1"}
    """))
    before = CodeTable.unmapped_counts["pass_table"]
    assert (table.lookup("M"), table.lookup("Q")) == ("1", "Q")
    assert CodeTable.unmapped_counts["pass_table"] == before + 1


def test_unmapped_code_under_default_policy_returns_the_default(tmp_path: Path) -> None:
    """`unmapped: {default: "9"}` returns the default for any unmapped code."""
    table = load_table(write(tmp_path, """
        id: default_table
        unmapped: {default: "9"}
        map: {M: "1"}
    """))
    assert (table.policy, table.lookup("Q"), table.lookup("M")) == ("default", "9", "1")


def test_map_keys_and_values_are_taken_verbatim_as_text(tmp_path: Path) -> None:
    """YAML typing does not touch codes: 01 stays "01", NO stays "NO", 1.10 stays "1.10"."""
    table = load_table(write(tmp_path, """
        id: verbatim
        map:
          01: 01
          NO: no
          1.10: 1.10
    """))
    assert dict(table.mapping) == {"01": "01", "NO": "no", "1.10": "1.10"}


def test_a_long_unmapped_code_is_cut_in_the_message(tmp_path: Path) -> None:
    """Free text sent in a coded field is not copied whole into the error message."""
    table = load_table(write(tmp_path, "id: t\nmap: {M: '1'}\n"))
    with pytest.raises(MappingError) as info:
        table.lookup("某某某 浙江省宁波市海曙区示例路1号 13800000000")
    assert "13800000000" not in str(info.value)


@pytest.mark.parametrize(("text", "line", "match"), [
    ("id: t\nmap:\n  M: '1'\n  F: '2'\n  M: '9'\n", 5, r"map\.M: duplicate key \(first at line 3\)"),
    ("id: t\nunmapped: ignore\nmap: {M: '1'}\n", 2, r"unmapped: must be error, pass or \{default"),
    ("id: t\nunmapped: {fallback: '9'}\nmap: {M: '1'}\n", 2, "unmapped: must be error, pass"),
    ("id: t\ndescription: x\n", 1, "missing required key 'map'"),
    ("id: t\nmap: [M, F]\n", 2, "map: must be a mapping"),
    ("id: t\nmap: {}\n", 2, "map: is empty"),
    ("id: t\nmap:\n  M: [1, 2]\n", 3, r"map\.M: must be a single text value"),
    ("id: t\ntarget: x\nunmaped: pass\nmap: {M: '1'}\n", 3,
     r"unmaped: unknown key \(did you mean 'unmapped'\?\)"),
    ("id: t\nid: u\nmap: {M: '1'}\n", 2, "id: duplicate key"),
    ("id: t\nmap:\n  M: '1'\n   F: '2'\n", 4, "not valid YAML"),
])
def test_bad_table_files_fail_with_file_and_line(tmp_path: Path, text: str, line: int, match: str) -> None:
    """Duplicate codes, a bad policy, a missing/empty/non-mapping map, unknown keys and YAML syntax errors
    raise ConfigError naming file:line."""
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError, match=match) as info:
        load_tables(tmp_path)
    assert (info.value.file, info.value.line) == (str(path), line)
    assert str(info.value).endswith(f"bad.yaml:{line})")


def test_the_same_table_id_in_two_files_is_an_error(tmp_path: Path) -> None:
    """Two files defining one table id would make lookups depend on file order."""
    write(tmp_path, "id: t\nmap: {M: '1'}\n", "a.yaml")
    write(tmp_path, "id: t\nmap: {M: '2'}\n", "b.yml")
    with pytest.raises(ConfigError, match=r"table id 't' is also defined in .*a\.yaml"):
        load_tables(tmp_path)


def test_a_missing_table_directory_is_a_config_error(tmp_path: Path) -> None:
    """Pointing the engine at a directory that does not exist fails clearly."""
    with pytest.raises(ConfigError, match="code table directory does not exist"):
        load_tables(tmp_path / "nope")


def test_code_table_is_frozen(tables: dict[str, CodeTable]) -> None:
    """Tables are immutable after load: neither attributes nor the map can be changed."""
    table = tables["hl7_0001_to_gbt_2261_1"]
    with pytest.raises(AttributeError):
        table.policy = "pass"  # type: ignore[misc]
    with pytest.raises(TypeError):
        table.mapping["X"] = "1"  # type: ignore[index]


def test_each_shipped_table_file_is_named_after_its_id(tables: dict[str, CodeTable]) -> None:
    """`<id>.yaml` keeps tables greppable: the file name is the id routes refer to."""
    for table in tables.values():
        assert table.file is not None and Path(table.file).name == f"{table.id}.yaml"
