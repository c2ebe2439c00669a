"""Route files are checked once at load: every problem is a ConfigError naming file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from route_files import PERSON_ROUTE as GOOD
from route_files import write

from engine.errors import ConfigError
from engine.mapping import build_router, load_router


def test_a_good_route_loads_compiled() -> None:
    """The shipped routes load, each with its dataset, compiled fields and the shared identity block."""
    router = build_router(sorted(Path("mappings").glob("*.yaml")))
    person = next(r for r in router.routes if r.id == "adt_person")
    assert person.dataset is not None and person.dataset.id == "person"
    assert [f.name for f in person.fields][:3] == ["name", "sex_code", "birth_date"]
    assert person.identity is not None


@pytest.mark.parametrize(("old", "new", "message", "line"), [
    ("transforms: [{lookup: hl7_0001_to_gbt_2261_1}]", "transforms: [lookupp]",
     "unknown transform 'lookupp'", 9),
    ("name: PID-5.1", "nmae: PID-5.1", "unknown field 'nmae' for this dataset, did you mean 'name'", 6),
    ("hl7_0001_to_gbt_2261_1", "no_such_table", "unknown code table 'no_such_table'", 9),
    ("name: PID-5.1", "name: PID-5..1", "HL7 path 'PID-5..1': column 7", 6),
    ("target: person", "target: persons", "unknown dataset 'persons'", 4),
    ("message_type: ADT^A01", "message_typ: ADT^A01", "did you mean 'message_type'", 3),
    ("id: r1", "id: r1\nfilter:\n  - drop_when: \"MSH-11 = 'T'\"\n    reason: test", "column 8", 3),
    ("name: PID-5.1", "name: {path: PID-5.1, const: x}", "exactly one of path", 6),
    ("name: PID-5.1", "name: PID-5.1\n  birth_date: {path: PID-7, transforms: [{date: {tz: keep}}]}",
     "date: unknown setting 'tz'", 7),
])
def test_route_problems_name_file_line_and_key(tmp_path: Path, old: str, new: str, message: str,
                                               line: int) -> None:
    """Unknown transform / field / table / dataset / key, bad path or condition: file:line in the error."""
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        build_router([path])
    assert message in str(info.value)
    assert (info.value.file, info.value.line) == (str(path), line)


def test_a_bad_fhirpath_names_the_column(tmp_path: Path) -> None:
    """FHIR routes' paths are FHIRPath, syntax-checked at load."""
    text = GOOD.replace("message_type: ADT^A01", "resource_type: Patient").replace(
        "name: PID-5.1", "name: \"Patient.name.where(\"").replace("PID-8", "Patient.gender")
    with pytest.raises(ConfigError, match=r"FHIRPath 'Patient\.name\.where\(': column"):
        build_router([write(tmp_path, text)])


def test_two_routes_with_one_id_are_an_error(tmp_path: Path) -> None:
    """Route ids are unique across files."""
    with pytest.raises(ConfigError, match="also used by"):
        build_router([write(tmp_path, GOOD, "a.yaml"), write(tmp_path, GOOD, "b.yaml")])


def test_load_router_checks_destinations_and_channel_routes(tmp_path: Path, make_config) -> None:  # type: ignore[no-untyped-def]
    """A route naming an unknown destination, or a channel naming an unknown route, fails at load."""
    (tmp_path / "routes").mkdir()
    write(tmp_path, GOOD + "destinations: [nowhere]\n", "routes/r1.yaml")
    config = make_config("""
        engine: {store: {path: db.sqlite}}
        channels: [{name: c1, type: mllp, mllp: {listen: '127.0.0.1:0'}, routes: [r1]}]
        routes: ["routes/*.yaml"]
    """)
    with pytest.raises(ConfigError, match="unknown destination 'nowhere'"):
        load_router(config)
    write(tmp_path, GOOD, "routes/r1.yaml")
    config = make_config("""
        engine: {store: {path: db.sqlite}}
        channels: [{name: c1, type: mllp, mllp: {listen: '127.0.0.1:0'}, routes: [r2]}]
        routes: ["routes/*.yaml"]
    """)
    with pytest.raises(ConfigError, match="unknown route 'r2'"):
        load_router(config)


def test_a_routes_glob_matching_nothing_is_an_error(make_config) -> None:  # type: ignore[no-untyped-def]
    """A typo in `routes:` cannot silently leave the engine without routes."""
    config = make_config("""
        engine: {store: {path: db.sqlite}}
        routes: ["nothing/*.yaml"]
    """)
    with pytest.raises(ConfigError, match="matches no file"):
        load_router(config)


RECORDS_WHEN = """\
id: dx_when
match:
  message_type: ADT^A01
records:
  group: DG1[*]
  when: "6 == 'F'"
target: diagnosis
fields:
  patient_id: PID-3.1
  diagnosis_code: "3.1"
  diagnosis_name: "3.2"
  diagnosis_date: {path: "5", transforms: [date]}
"""


def test_records_when_keeps_only_the_items_it_holds_for_and_no_item_means_no_result(tmp_path: Path) -> None:
    """`records: {group, when}` maps only the DG1 whose DG1-6 is F; a message with none gets no result
    from the route at all (it does not take the message), not a filtered or failed one."""
    from engine.types import HL7V2, MessageState, StoredMessage

    router = build_router([write(tmp_path, RECORDS_WHEN)])
    head = "MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01|C1|P|2.5.1\rPID|1||P001\r"

    def route(body: str) -> list[dict[str, object]]:
        msg = StoredMessage(id="M1", channel="c", received_at=1710000000.0, content_type=HL7V2,
                            state=MessageState.RECEIVED, raw=(head + body).encode())
        return [r.record or {"error": r.error, "filtered": r.filtered} for r in router.route(msg)]

    two = route("DG1|1||J18.9^肺炎||20240301|A\rDG1|2||I10^高血压||20240301|F\r")
    assert [r.get("diagnosis_code") for r in two] == ["I10"], two
    assert route("DG1|1||J18.9^肺炎||20240301|A\r") == []
    assert route("") == []  # no DG1 at all: no result either (not "filtered: no DG1[*]")


def test_records_when_with_an_unknown_key_names_file_and_line(tmp_path: Path) -> None:
    """A typo inside `records:` is a ConfigError at its line, with a hint."""
    path = write(tmp_path, RECORDS_WHEN.replace("  when:", "  wehn:"))
    with pytest.raises(ConfigError, match="did you mean 'when'") as info:
        build_router([path])
    assert info.value.line == 6


def test_a_field_can_read_the_items_of_a_group_a_condition_chooses(tmp_path: Path) -> None:
    """`{group: DG1[*], when: ..., path: ...}` reads the first chosen item (every one with `all`)."""
    from engine.types import HL7V2, MessageState, StoredMessage

    route = RECORDS_WHEN.replace("records:\n  group: DG1[*]\n  when: \"6 == 'F'\"\n", "").replace(
        '  diagnosis_code: "3.1"\n  diagnosis_name: "3.2"\n'
        '  diagnosis_date: {path: "5", transforms: [date]}\n',
        "  diagnosis_code: {group: \"DG1[*]\", when: \"6 == 'F'\", path: '3.1'}\n"
        "  diagnosis_name: {group: \"DG1[*]\", when: \"6 != 'F'\", path: '3.2', all: true,"
        " transforms: [concat]}\n"
        "  diagnosis_date: {path: DG1-5, transforms: [date]}\n")
    router = build_router([write(tmp_path, route)])
    raw = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01|C1|P|2.5.1\rPID|1||P001\r"
           "DG1|1||J18.9^肺炎||20240301|A\rDG1|2||I10^高血压||20240301|F\rDG1|3||E11^糖尿病||20240301|W\r")
    [result] = router.route(StoredMessage(id="M1", channel="c", received_at=1710000000.0, content_type=HL7V2,
                                          state=MessageState.RECEIVED, raw=raw.encode()))
    assert result.record is not None, result.error
    assert (result.record["diagnosis_code"], result.record["diagnosis_name"]) == ("I10", "肺炎糖尿病")


def test_when_on_a_field_without_a_group_is_an_error(tmp_path: Path) -> None:
    """`when:` as a field key only chooses among group items; alone it is a ConfigError at its line."""
    path = write(tmp_path, RECORDS_WHEN.replace('  diagnosis_code: "3.1"',
                                                '  diagnosis_code: {path: "3.1", when: "6"}'))
    with pytest.raises(ConfigError, match="when: needs a group"):
        build_router([path])


def test_paths_may_mix_plain_paths_and_group_items(tmp_path: Path) -> None:
    """`paths: [{group, when, path}, PATH]` + first: the group item's value, else the plain path (as
    an order's TQ1-3 in v2.5, else ORC-7 in v2.4)."""
    from engine.types import HL7V2, MessageState, StoredMessage

    route = RECORDS_WHEN.replace(
        '  diagnosis_code: "3.1"\n',
        "  diagnosis_code:\n    paths: [{group: \"DG1[*]\", when: \"6 == 'F'\", path: '3.1'}, PID-3.1]\n"
        "    transforms: [first]\n").replace(
        "records:\n  group: DG1[*]\n  when: \"6 == 'F'\"\n", "").replace(
        '  diagnosis_name: "3.2"\n  diagnosis_date: {path: "5", transforms: [date]}\n',
        "  diagnosis_date: {path: DG1-5, transforms: [date]}\n")
    router = build_router([write(tmp_path, route)])
    head = "MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01|C1|P|2.5.1\rPID|1||P001\r"

    def code(body: str) -> object:
        [result] = router.route(StoredMessage(id="M1", channel="c", received_at=1710000000.0,
                                              content_type=HL7V2, state=MessageState.RECEIVED,
                                              raw=(head + body).encode()))
        assert result.record is not None, result.error
        return result.record.get("diagnosis_code")

    assert code("DG1|1||J18.9||20240301|A\rDG1|2||I10||20240301|F\r") == "I10"
    assert code("DG1|1||J18.9||20240301|A\r") == "P001"
