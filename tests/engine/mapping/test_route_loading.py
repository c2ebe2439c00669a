"""Route files are checked once at load: every problem is a ConfigError naming file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.mapping import build_router, load_router

GOOD = """\
id: r1
match:
  message_type: ADT^A01
target: person
fields:
  name: PID-5.1
  sex_code:
    path: PID-8
    transforms: [{lookup: hl7_0001_to_gbt_2261_1}]
"""


def write(tmp_path: Path, text: str, name: str = "route.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


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
