"""Routes are checked before they run: HL7 v2 paths against hl7apy's structure definitions for the
versions the route matches, option values against their sets, and the config against its routes.
Every problem is reported at once, each as `key: what (file:line)` with a suggestion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from route_files import PERSON_ROUTE as ROUTE
from route_files import write

from engine.cli import main
from engine.config import ConfigErrors, load_config
from engine.errors import ConfigError
from engine.mapping import build_router, load_router


def problems(paths: list[Path]) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        build_router(paths)
    return list(getattr(info.value, "errors", None) or [info.value])


@pytest.mark.parametrize(("path", "message"), [
    ("PID-99", "PID-99: PID has fields 1-39; PID-99 does not exist (HL7 v2.5.1; not in v2.3.1, v2.4, v2.5"),
    ("PXD-1", "segment PXD is not defined; did you mean"),
    ("PID-3[XX.5=HC].1", "PID-3 is CX, not XX; write PID-3[CX.5=HC].1"),
    ("PID-5.20", "PID-5 is XPN with 14 components; component 20 does not exist"),
    ("PID-3.4.9", "PID-3.4 is HD with 3 subcomponents; subcomponent 9 does not exist"),
    ("PID-3[CX.12=HC].1", "the filter reads component 12 but PID-3 (CX) has 10"),
    ("RXA-5.1", "segment RXA occurs in no ADT message structure (HL7 Table 0354)"),
])
def test_a_path_the_message_structure_lacks_is_a_file_line_error_with_a_suggestion(
        tmp_path: Path, path: str, message: str) -> None:
    """PID-99, segment PXD, a filter on the wrong data type, a component beyond the type: each an error."""
    route = write(tmp_path, ROUTE.replace("name: PID-5.1", f"name: {path}"))
    [error] = problems([route])
    assert message in str(error)
    assert (error.file, error.line) == (str(route), 6)


def test_valid_paths_of_the_shipped_routes_and_site_conventions_pass() -> None:
    """Every shipped route loads: PV1-10.2 (code^name in a field HL7 v2.7 made CWE) is accepted."""
    router = build_router(sorted(Path("mappings").glob("*.yaml")))
    assert {"adt_person", "oru_lab_report", "vxu_immunization", "mdm_document_index"} <= {
        r.id for r in router.routes}


def test_relative_paths_are_checked_against_their_group(tmp_path: Path) -> None:
    """Inside `each: {group: OBX[*]}` "99" is OBX-99; inside a `PID-3[*]` group "12" is CX.12."""
    route = write(tmp_path, """\
        id: lab
        match: {message_type: ORU^R01}
        target: lab_report
        fields:
          report_no: OBR-3.1
          report_date: {path: OBR-7, transforms: [date]}
        each:
          results:
            group: OBX[*]
            fields:
              item_code: "99"
    """)
    [error] = problems([route])
    assert "99: OBX has fields 1-" in str(error) and error.line == 11


def test_a_route_is_checked_only_against_the_versions_it_matches(tmp_path: Path) -> None:
    """PID-39 exists from v2.5; a route matching only v2.3.1 may not read it, one matching all may."""
    assert build_router([write(tmp_path, ROUTE.replace("PID-5.1", "PID-39.1"), "all.yaml")])
    old = ROUTE.replace("PID-5.1", "PID-39.1").replace("ADT^A01", "ADT^A01\n  version: '2.3.1'")
    [error] = problems([write(tmp_path, old.replace("id: r1", "id: r2"), "old.yaml")])
    assert "PID has fields 1-30; PID-39 does not exist (HL7 v2.3.1)" in str(error)


def test_match_version_must_be_a_known_quoted_version(tmp_path: Path) -> None:
    """`version: 2.5` (a YAML number) and an unknown version are errors with a hint."""
    number = ROUTE.replace("ADT^A01", "ADT^A01\n  version: 2.5")
    [error] = problems([write(tmp_path, number)])
    assert "quote the version" in str(error)
    typo = ROUTE.replace("ADT^A01", "ADT^A01\n  version: '2.51'")
    [error] = problems([write(tmp_path, typo)])
    assert "unknown HL7 v2 version '2.51'" in str(error)


def test_every_problem_of_every_route_file_is_reported_not_only_the_first(tmp_path: Path) -> None:
    """Three bad fields in one file and one in another: four errors, each with its own line."""
    one = write(tmp_path, ROUTE.replace("name: PID-5.1", "name: PID-99\n  birth_date: PXD-1\n"
                                        "  phone: {path: PID-13.1, transforms: [lookupp]}"), "one.yaml")
    two = write(tmp_path, ROUTE.replace("id: r1", "id: r2").replace("PID-8", "PID-3[XX.5=HC].1"), "two.yaml")
    errors = problems([one, two])
    assert sorted((e.file, e.line) for e in errors) == [
        (str(one), 6), (str(one), 7), (str(one), 8), (str(two), 8)]


def test_on_invalid_yaml_null_is_honoured(tmp_path: Path) -> None:
    """`on_invalid: null` (YAML null, not the text "null") makes an invalid number absent, not an error."""
    lenient = "{path: PID-7, transforms: [{number: {on_invalid: null}}]}"
    route = write(tmp_path, ROUTE.replace("name: PID-5.1", f"name: PID-5.1\n  birth_date: {lenient}"))
    [compiled] = build_router([route]).routes
    number = next(f for f in compiled.fields if f.name == "birth_date").steps[0]
    assert number(">10", None) is None


@pytest.mark.parametrize(("transform", "message"), [
    ("{number: {on_invalid: nul}}",
     "number: on_invalid must be one of error, null, got 'nul'; did you mean 'null'?"),
    ("{date: {timezone: beijin}}", "date: timezone must be one of beijing, keep, got 'beijin'"),
    ("{lookup: {table: hl7_0001_to_gbt_2261_1, on_empty: true}}",
     "lookup: on_empty must be one of skip, lookup"),
    ("{regex: {pattern: '(x)', on_mismatch: warn}}", "regex: on_mismatch must be one of null, error"),
    # a transform nested in another (the integration's by_system) is checked the same way
    ("{by_system: {system: PID-3.5, systems: {NI: {number: {on_invalid: nul}}}}}",
     "number: on_invalid must be one of error, null, got 'nul'"),
])
def test_every_option_value_is_checked_against_its_allowed_set(tmp_path: Path, transform: str,
                                                               message: str) -> None:
    route = write(tmp_path, ROUTE.replace("[{lookup: hl7_0001_to_gbt_2261_1}]", f"[{transform}]"))
    [error] = problems([route])
    assert message in str(error) and error.line == 9


def test_passthrough_and_all_must_be_booleans(tmp_path: Path) -> None:
    route = write(tmp_path, ROUTE.replace("name: PID-5.1", "name: {path: PID-5.1, all: yes please}"))
    [error] = problems([route])
    assert "expected true or false, got 'yes please'" in str(error)


CONFIG = """\
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
destinations:
  - name: platform
    type: stub
    stub: {{}}
    routes: [{pattern}]
routes: [route.yaml]
"""


def test_match_channels_and_destination_route_globs_must_name_what_exists(tmp_path: Path) -> None:
    """A route's `match.channels` naming no channel, and a destination glob matching no route: errors."""
    write(tmp_path, ROUTE.replace("message_type: ADT^A01", "channels: [hiss]\n  message_type: ADT^A01"))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(pattern="'lab_*'"), encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_router(load_config(config))
    texts = [str(e) for e in info.value.errors]
    assert any("unknown channel 'hiss'; did you mean 'his'?" in t and "route.yaml:3" in t for t in texts)
    assert any("routes pattern 'lab_*' matches no route" in t and "config.yaml:12" in t for t in texts)
    config.write_text(CONFIG.format(pattern="'r*'"), encoding="utf-8")
    write(tmp_path, ROUTE.replace("message_type: ADT^A01", "channels: [his]\n  message_type: ADT^A01"))
    assert [r.id for r in load_router(load_config(config)).routes] == ["r1"]


def test_yonglink_validate_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, ROUTE.replace("name: PID-5.1", "name: PID-99\n  birth_date: PXD-1"))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(pattern="'x*'"), encoding="utf-8")
    assert main(["validate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "PID-99" in err and "PXD" in err and "'x*' matches no route" in err
    assert "3 problems found" in err


def test_the_config_version_changes_when_a_route_or_table_file_changes(tmp_path: Path) -> None:
    """The version `POST /reload` reports covers the route and code-table files, not only the config."""
    route = write(tmp_path, ROUTE)
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "t.yaml").write_text("id: t\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(pattern="'r*'").replace("  admin:", "  tables: tables\n  admin:"),
                      encoding="utf-8")
    first = load_config(config).version
    assert load_config(config).version == first
    route.write_text(ROUTE.replace("PID-5.1", "PID-5.2"), encoding="utf-8")
    second = load_config(config).version
    assert second != first
    (tables / "t.yaml").write_text("id: t\n# changed\n", encoding="utf-8")
    assert load_config(config).version not in (first, second)


RELOAD_CONFIG = """\
engine:
  store: {path: var/e.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: his
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
destinations:
  - name: platform
    type: stub
routes: [route.yaml]
"""


async def test_post_reload_reports_a_new_version_after_a_route_change(
        tmp_path: Path, make_config: Any, engine_factory: Any) -> None:
    """Only the route file changes (not config.yaml): `POST /reload` answers a new version."""
    write(tmp_path, ROUTE)
    engine = await engine_factory(make_config(RELOAD_CONFIG))
    before = engine.config.version
    write(tmp_path, ROUTE.replace("name: PID-5.1", "name: PID-5.2"))
    # X-Requested-With: what a script (not a cross-site form) sends (engine/admin/auth.py's CSRF check)
    async with aiohttp.ClientSession() as http, http.post(engine.admin.url + "/reload",
                                                          headers={"X-Requested-With": "test"}) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert result["ok"] is True and result["previous_version"] == before
    assert result["version"] != before


def test_an_hl7_message_with_an_empty_msh4_takes_its_channels_source_org() -> None:
    """`source_org` on the channel: the envelope's sender when MSH-4 names none (the record would fail
    with "no sending organisation" otherwise)."""
    from engine.types import HL7V2, MessageState, StoredMessage

    text = ("MSH|^~\\&|HIS||EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|T1|P|2.5.1\r"
            "PID|1||P001^^^NBDYYY^PI||王^建国||19850312|M\r")
    routes = [Path("mappings/adt_person.yaml")]
    msg = StoredMessage(id="m1", channel="his", received_at=1710000000.0, content_type=HL7V2,
                        state=MessageState.RECEIVED, raw=text.encode())
    [without] = build_router(routes).route(msg)
    assert without.error is not None and "no sending organisation" in without.error
    [record] = build_router(routes, channel_orgs={"his": "NB330201"}).route(msg)
    assert record.record is not None and record.record["envelope"]["source_org"] == "NB330201"


def test_match_version_selects_messages_by_msh12(tmp_path: Path) -> None:
    """A route with `version: '2.4'` takes an HL7 v2.4 message and not the same message in v2.5.1."""
    from engine.types import HL7V2, MessageState, StoredMessage

    route = write(tmp_path, ROUTE.replace("ADT^A01", "ADT^A01\n  version: '2.4'"))
    router = build_router([route])
    text = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|T1|P|{v}\r"
            "PID|1||P001^^^NBDYYY^PI||王^建国||19850312|M\r")

    def routed(version: str) -> list[str]:
        msg = StoredMessage(id="m", channel="his", received_at=1710000000.0, content_type=HL7V2,
                            state=MessageState.RECEIVED, raw=text.format(v=version).encode())
        return [r.route_id for r in router.route(msg)]

    assert routed("2.4") == ["r1"]
    assert routed("2.5.1") == []


def test_a_destination_taking_every_route_loads_while_the_config_has_no_route_yet(tmp_path: Path) -> None:
    """`routes: ["*"]` on a destination names every route there is (an export of whatever is mapped), so
    a config without routes still loads; a narrower glob still has to match one."""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(pattern="'*'").replace("routes: [route.yaml]", "routes: []"),
                      encoding="utf-8")
    assert load_router(load_config(config)).routes == []
    config.write_text(CONFIG.format(pattern="'lab_*'").replace("routes: [route.yaml]", "routes: []"),
                      encoding="utf-8")
    with pytest.raises(ConfigErrors, match="routes pattern 'lab_\\*' matches no route"):
        load_router(load_config(config))


def test_records_when_and_group_fields_are_checked_in_their_groups(tmp_path: Path) -> None:
    """The datasets forms are checked like every path, all problems at once: `records: {group, when}`
    reads the OBR ("99" is OBR-99), a `{group: OBX[*], when, path}` field and a `paths` entry of that
    form read each OBX ("3.99" is beyond OBX-3's CE, "88" beyond OBX's fields)."""
    route = write(tmp_path, """\
        id: exam
        match: {message_type: ORU^R01}
        records:
          group: OBR[*]
          when: "99 exists"
        target: exam_report
        fields:
          report_no: "3.1"
          findings: {group: "OBX[*]", when: "3.99 == 'GDT'", path: "5"}
          impression:
            paths: [{group: "OBX[*]", path: "88"}, "OBX-5"]
            transforms: [first]
    """)
    errors = sorted(problems([route]), key=lambda e: e.line or 0)
    assert [e.line for e in errors] == [5, 9, 11]
    assert "99: OBR has fields 1-" in str(errors[0])
    assert "3.99: OBX-3 is CE" in str(errors[1])
    assert "88: OBX has fields 1-" in str(errors[2])
    fixed = route.read_text(encoding="utf-8").replace('"99 exists"', '"24.1 exists"').replace(
        "3.99", "3.1").replace('path: "88"', 'path: "5"')
    route.write_text(fixed, encoding="utf-8")
    assert [r.id for r in build_router([route]).routes] == ["exam"]


def test_an_identity_block_problem_is_reported_with_the_other_problems_of_the_route(tmp_path: Path) -> None:
    """A bad `identity:` block does not hide a bad path in the same route (and vice versa)."""
    route = write(tmp_path, ROUTE.replace("name: PID-5.1", "name: PID-99") + "identity: {on_invalid: nul}\n")
    errors = problems([route])
    texts = sorted(str(e) for e in errors)
    assert len(texts) == 2, texts
    assert any("PID-99" in t for t in texts) and any("on_invalid" in t for t in texts)
