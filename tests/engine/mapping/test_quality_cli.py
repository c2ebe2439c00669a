"""`yonglink map / test / validate / quality` and the store-backed quality report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.mapping import build_router
from engine.mapping.quality import dataset_fields, from_store, table
from engine.store import messages, migrations
from engine.types import HL7V2, InboundMessage, MessageState, StoredMessage

SAMPLE = Path("tests/samples/adt_a01_v251_utf8.hl7")
BAD = b"MSH|^~\\&|HIS|NBX|EMPI|NBWJW|20240301||ADT^A04|T1|P|2.5.1\rPID|1||P1^^^NBX^PI||Wang||19851345|M"


def fill_store(path: Path) -> None:
    """A store holding two mapped messages' results, as the pipeline records them."""
    conn = sqlite3.connect(path)
    migrations.apply_sqlite(conn)
    fill(conn)
    conn.commit()
    conn.close()


def fill(conn: Any) -> None:
    router = build_router(sorted(Path("mappings").glob("*.yaml")))
    for raw, facility in ((SAMPLE.read_bytes(), "NBDYYY"), (BAD, "NBX")):
        inbound = InboundMessage(channel="c", raw=raw, content_type=HL7V2, received_at=1.7e9,
                                 sending_facility=facility)
        acc = messages.insert(conn, inbound, dedupe_window=0)
        msg = StoredMessage(id=acc.message_id, channel="c", received_at=1.7e9, content_type=HL7V2,
                            state=MessageState.RECEIVED, raw=raw, sending_facility=facility)
        results = router.route(msg)
        messages.record_outcome(conn, acc.message_id, MessageState.MAPPED, None, results)


def test_quality_is_recomputed_from_the_store_results(tmp_path: Path) -> None:
    """Mapped and failed counts and invalid fields come back from the results table."""
    db = tmp_path / "y.db"
    fill_store(db)
    registry = build_router([]).datasets
    conn = sqlite3.connect(db)
    snap = from_store(conn, dataset_fields(registry)).snapshot()
    conn.close()
    assert snap["organisations"]["NBDYYY"]["person"]["mapped"] == 1
    assert snap["organisations"]["NBDYYY"]["diagnosis"]["mapped"] == 1
    assert snap["organisations"]["NBX"]["person"]["failed"] == 1
    assert snap["organisations"]["NBX"]["person"]["fields"]["birth_date"] == {"missing": 0, "invalid": 1}
    assert "NBDYYY" in table(snap)


@pytest.mark.postgres
@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
def test_yonglink_quality_reads_a_postgresql_store(tmp_path: Path, raw_connection: Any, pg_dsn: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """With `backend: postgres` the CLI reads the database the config names (read-only), no engine."""
    fill(raw_connection)
    config = tmp_path / "config.yaml"
    config.write_text(f"engine:\n  store: {{backend: postgres, dsn: '{pg_dsn}'}}\n", encoding="utf-8")
    assert main(["quality", "--config", str(config), "--json", "--since", "3650d"]) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["organisations"]["NBX"]["person"]["failed"] == 1
    assert main(["quality", "--config", str(config), "--month", "2023-11", "--format", "json"]) == 0
    assert "NBDYYY" in capsys.readouterr().out


def test_yonglink_quality_prints_a_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI reads the store named by the config, no engine running."""
    fill_store(tmp_path / "y.db")
    config = tmp_path / "config.yaml"
    config.write_text("engine:\n  store: {path: y.db}\n", encoding="utf-8")
    assert main(["quality", "--config", str(config)]) == 0
    assert "NBX" in capsys.readouterr().out
    assert main(["quality", "--config", str(config), "--json", "--since", "3650d"]) == 0
    assert json.loads(capsys.readouterr().out)["organisations"]["NBX"]["person"]["failed"] == 1


def test_yonglink_map_prints_records_and_which_routes_matched(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --route every matching route runs; --keys de keys the record by DE id."""
    assert main(["map", "--input", str(SAMPLE), "--route", "adt_person", "--keys", "de"]) == 0
    out = capsys.readouterr()
    [item] = json.loads(out.out)
    assert item["record"]["DE02.01.039.00"] == "王建国"
    assert main(["map", "--input", str(SAMPLE)]) == 0
    assert "adt_diagnosis, adt_inpatient_admission, adt_person" in capsys.readouterr().err


def test_yonglink_map_exits_1_and_prints_the_error(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A message that fails mapping prints its error text and exits 1."""
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(BAD)
    assert main(["map", "--input", str(bad)]) == 1
    assert "birth_date: PID-7 '19851345' is not a valid date" in capsys.readouterr().out


def test_yonglink_test_prints_pass_fail_lines_with_a_diff(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A failing case prints FAIL, the diff, and the command exits 1."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tmp_path / "person.yaml").write_text(Path("mappings/adt_person.yaml").read_text(encoding="utf-8"),
                                          encoding="utf-8")
    (tests / "t.yaml").write_text(
        "route: adt_person\ncases:\n"
        f"  - name: right\n    input_file: {SAMPLE.resolve()}\n    expect: {{contains: {{name: 王建国}}}}\n"
        f"  - name: wrong\n    input_file: {SAMPLE.resolve()}\n    expect: {{contains: {{name: 李四}}}}\n",
        encoding="utf-8")
    assert main(["test", str(tests)]) == 1
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" in out and '-  "name": "李四"' in out and "1 passed, 1 failed" in out


def test_yonglink_validate_checks_route_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Route files given to validate are compiled; a bad one exits 1 with file:line."""
    config = tmp_path / "config.yaml"
    config.write_text("engine:\n  store: {path: y.db}\n", encoding="utf-8")
    assert main(["validate", "--config", str(config), "mappings/adt_person.yaml"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nmatch: {message_type: ADT^A01}\ntarget: person\nfields:\n  name: {path: PID-5, "
                   "transforms: [titlecase]}\n", encoding="utf-8")
    assert main(["validate", "--config", str(config), str(bad)]) == 1
    assert "unknown transform 'titlecase'" in capsys.readouterr().err


def test_yonglink_map_with_a_config_uses_its_routes_and_channel_restrictions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config loads the config's routes; --channel applies that channel's `routes:` list."""
    mappings = Path("mappings").resolve()
    config = tmp_path / "config.yaml"
    config.write_text(
        "engine:\n  store: {path: y.db}\n"
        "channels:\n  - {name: his, type: mllp, enabled: false, mllp: {listen: '127.0.0.1:0'},\n"
        "     routes: [adt_person]}\n"
        f"routes: ['{mappings}/*.yaml']\n", encoding="utf-8")
    assert main(["map", "--config", str(config), "--channel", "his", "--input", str(SAMPLE)]) == 0
    assert [i["route"] for i in json.loads(capsys.readouterr().out)] == ["adt_person"]
