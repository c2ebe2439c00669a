"""The monthly data-quality bulletin, on a month of traffic built here and counted by hand.

The traffic goes through the real router and the real store tables, as the pipeline records it. The
route is the test's own (so the expected figures depend on this file only, not on the shipped routes):
person ← ADT^A04, required fields (schema): name, sex_code; optional fields the route maps: patient_id,
id_type_code, id_number, birth_date, phone (5).
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from engine.cli import main
from engine.config import load_config
from engine.mapping import load_router
from engine.mapping.formats import BEIJING
from engine.pipeline import decide
from engine.quality import bulletin, dataset_fields, month_bounds, route_fields, to_csv, to_html
from engine.store import messages, migrations
from engine.types import HL7V2, InboundMessage, MessageState, StoredMessage

ROUTE = """\
id: q_person
match:
  message_type: ADT^A04
target: person
fields:
  patient_id: PID-3.1
  id_type_code:
    const: "01"
    transforms: [{when: "PID-19 exists"}]
  id_number:
    path: PID-19
    transforms: [trim, resident_id]
  name:
    path: PID-5.1
    transforms: [required]
  sex_code:
    path: PID-8
    transforms: [trim, upper, {lookup: hl7_0001_to_gbt_2261_1}]
  birth_date:
    path: PID-7
    transforms: [date]
  phone: PID-13.1
destinations: []
"""
PASSTHROUGH = """\
id: q_pass
match:
  message_type: ADT^A04
passthrough: true
destinations: []
"""
GOOD_ID = "330203198503120171"  # GB 11643 check character 1 (weights 7 9 10 5 8 4 2 1 6 3 ...)
BAD_ID = "330203198503120172"


def at(text: str) -> float:
    """`2026-11-03 12:00` Beijing time → epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=BEIJING).timestamp()


def adt(
    facility: str,
    control: str,
    msh7: str,
    *,
    mtype: str = "ADT^A04",
    pid3: str = "P1",
    name: str = "王建国",
    sex: str = "M",
    dob: str = "19850312",
    phone: str = "13805740123",
    resident_id: str = GOOD_ID,
) -> bytes:
    return (
        f"MSH|^~\\&|HIS|{facility}|EMPI|NBWJW|{msh7}+0800||{mtype}|{control}|P|2.5.1\r"
        f"PID|1||{pid3}||{name}||{dob}|{sex}|||||{phone}||||||{resident_id}"
    ).encode()


TRAFFIC = [
    # (received at, facility, raw or None for an unparseable message)
    ("2026-10-15 11:00", "NBDYYY", adt("NBDYYY", "o1", "20261015100000")),  # October: perfect
    ("2026-11-03 12:00", "NBDYYY", adt("NBDYYY", "m1", "20261103100000")),  # 2 h, complete
    ("2026-11-11 14:00", "nbdyyy", adt("nbdyyy", "m2", "20261110080000")),  # 30 h, same record
    (
        "2026-11-01 00:10",
        "NBDYYY",
        adt("NBDYYY", "m3", "20261031234000", pid3="P3", sex="F", dob="", phone="", resident_id=""),
    ),  # 0.5 h, 1 of 4 optional
    ("2026-11-21 09:00", "NBDYYY", adt("NBDYYY", "m4", "20261121080000", dob="19851345")),  # bad date
    ("2026-11-22 09:00", "NBDYYY", adt("NBDYYY", "m5", "20261122080000", sex="Q", name="")),  # code + name
    ("2026-11-23 09:00", "NBDYYY", None),  # rejected at parse
    ("2026-11-24 09:00", "NBDYYY", adt("NBDYYY", "m7", "20261124080000", mtype="ADT^A99")),  # no route
    ("2026-11-05 10:00", "NBX", adt("NBX", "n1", "20261105090000", resident_id=BAD_ID)),  # bad ID
    ("2026-11-05 11:00", "NBX", adt("NBX", "n2", "20261105100000", pid3="X2")),  # 1 h, complete
    ("2026-12-01 00:30", "NBX", adt("NBX", "d1", "20261201000000")),  # December (UTC: Nov 30)
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "q_person.yaml").write_text(ROUTE, encoding="utf-8")
    # a pass-through route beside it: its results carry no record and must count for nothing
    (tmp_path / "q_pass.yaml").write_text(PASSTHROUGH, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        "engine:\n  store: {path: y.db}\nroutes: [q_person.yaml, q_pass.yaml]\n", encoding="utf-8"
    )
    router = load_router(load_config(tmp_path / "config.yaml"))
    conn = sqlite3.connect(tmp_path / "y.db")
    migrations.apply_sqlite(conn)
    for when, facility, raw in TRAFFIC:
        received = at(when)
        inbound = InboundMessage(
            channel="his",
            raw=raw or b"MSH|garbage",
            content_type=HL7V2,
            # MSH-9 as the channels store it (engine/hl7v2/inbound.py)
            message_type=raw.split(b"|")[8].decode() if raw else None,
            received_at=received,
            sending_facility=facility,
        )
        if raw is None:
            messages.insert(conn, inbound, dedupe_window=0, state=MessageState.REJECTED, error="cannot parse")
            continue
        acc = messages.insert(conn, inbound, dedupe_window=0)
        stored = StoredMessage(
            id=acc.message_id,
            channel="his",
            received_at=received,
            content_type=HL7V2,
            state=MessageState.RECEIVED,
            raw=raw,
            sending_facility=facility,
        )
        results = router.route(stored)
        state, error = decide(results)
        messages.record_outcome(conn, acc.message_id, state, error, results)
    conn.commit()
    conn.close()
    return tmp_path


def november(project: Path) -> dict:
    router = load_router(load_config(project / "config.yaml"))
    conn = sqlite3.connect(project / "y.db")
    try:
        return bulletin(
            conn, "2026-11", datasets=dataset_fields(router.datasets), routes=route_fields(router.routes)
        )
    finally:
        conn.close()


def test_month_bounds_are_beijing_calendar_months() -> None:
    """November 2026 runs from 1 Nov 00:00 to 1 Dec 00:00 in UTC+8."""
    assert month_bounds("2026-11") == (at("2026-11-01 00:00"), at("2026-12-01 00:00"))
    assert month_bounds("2026-12")[1] == at("2027-01-01 00:00")
    with pytest.raises(ValueError):
        month_bounds("2026-13")


def test_each_figure_of_an_organisation_matches_the_hand_count(project: Path) -> None:
    """NBDYYY in November: 7 messages (one sent as `nbdyyy`), every figure of the bulletin."""
    report = november(project)
    [org] = [o for o in report["organisations"] if o["org"] == "NBDYYY"]
    assert org["messages"] == {
        "received": 7,
        "rejected": 1,
        "unrouted": 1,
        "filtered": 0,
        "mapped": 3,
        "failed": 2,
        "pending": 0,
    }
    assert org["records"] == {"mapped": 3, "failed": 2, "filtered": 0}
    # required: 5 records × {name, sex_code} = 10; m5 lacks its name → 9 present
    assert org["completeness"]["required"] == {"present": 9, "total": 10, "rate": 0.9}
    # optional mapped: 3 mapped records × 5; m3 carries only patient_id → 5 + 5 + 1
    assert org["completeness"]["optional_mapped"] == {"present": 11, "total": 15, "rate": 0.7333}
    assert org["validity"] == {
        "invalid_values": {"code": 1, "date": 1, "resident_id": 0, "other": 0},
        "records_with_invalid": 2,
        "rate": 0.6,
    }
    # delays 0.5 h, 2 h, 30 h (nearest rank: p50 = 2nd, p95 = 3rd)
    assert org["timeliness"] == {"p50_hours": 2.0, "p95_hours": 30.0, "within_24h": 0.6667, "records": 3}
    assert org["duplicates"] == 1
    worst = [(f["field"], f["missing"], f["invalid"]) for f in org["worst_fields"]]
    assert worst == [
        ("person.birth_date", 1, 1),
        ("person.id_number", 1, 0),
        ("person.id_type_code", 1, 0),
        ("person.name", 1, 0),
        ("person.phone", 1, 0),
    ]
    assert all(
        len(f["examples"]) >= 1 and all(len(x) == 28 for x in f["examples"]) for f in org["worst_fields"]
    )
    assert org["datasets"]["person"]["records"] == {"mapped": 3, "failed": 2, "filtered": 0}
    assert org["datasets"]["person"]["title"] == "个人基本信息"
    assert org["unrouted_by_type"] == {"ADT^A99": 1}  # m7: which message types no route takes (#12)


def test_resident_id_failures_and_the_month_boundary(project: Path) -> None:
    """NBX: the bad resident ID is a validity failure of its kind; the 1 Dec 00:30 message is December's."""
    [org] = [o for o in november(project)["organisations"] if o["org"] == "NBX"]
    assert org["messages"]["received"] == 2
    assert org["validity"]["invalid_values"]["resident_id"] == 1
    assert org["validity"]["rate"] == 0.5
    assert org["timeliness"]["p50_hours"] == 1.0


def test_ranking_score_and_change_against_the_previous_month(project: Path) -> None:
    """Score = 100 × (0.35 V + 0.30 C + 0.20 S + 0.15 T); NBX 72.5 ranks above NBDYYY 64.9, which fell
    from a perfect October (100, rank 1) by 35.1 points and one place.

    NBDYYY: V = 3/5 records valid; C = (2 × 0.9 + 0.7333) / 3; S = 3 mapped / (3 + 2 failed + 1 rejected
    + 1 unrouted); T = 2/3 within 24 h → 21 + 25.33 + 8.57 + 10.0 = 64.9.
    NBX: V = 1/2, C = 1, S = 1/2, T = 1 → 17.5 + 30 + 10 + 15 = 72.5."""
    report = november(project)
    ranking = [(o["rank"], o["org"], o["score"]) for o in report["organisations"]]
    assert ranking == [(1, "NBX", 72.5), (2, "NBDYYY", 64.9)]
    nbx, nbdyyy = report["organisations"]
    assert nbx["previous"] is None and nbx["change"] is None
    assert nbdyyy["previous"] == {"score": 100.0, "rank": 1}
    assert nbdyyy["change"] == {"score": -35.1, "rank": -1}
    assert nbdyyy["score_parts"] == {
        "validity": 0.6,
        "completeness": pytest.approx(0.8444, abs=1e-4),
        "success": 0.4286,
        "timeliness": 0.6667,
    }


def test_csv_and_html_carry_the_same_figures_and_no_patient_data(project: Path) -> None:
    report = november(project)
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    whole = next(r for r in rows if r["org"] == "NBDYYY" and r["dataset"] == "*")
    assert (whole["received"], whole["records_failed"], whole["duplicates"]) == ("7", "2", "1")
    page = to_html(report)
    assert "数据质量月度通报" in page and "2026-11" in page and "NBDYYY" in page and "64.9" in page
    assert "Monthly Data-Quality Bulletin" in to_html(report, lang="en")
    for secret in ("王建国", GOOD_ID, "13805740123"):
        assert secret not in page and secret not in json.dumps(report, ensure_ascii=False)


def test_yonglink_quality_month_prints_each_format(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`yonglink quality --month 2026-11 --org nbx --format json` filters the organisation case-insensitively;
    `--format html -o` writes the bulletin."""
    config = str(project / "config.yaml")
    assert (
        main(["quality", "--config", config, "--month", "2026-11", "--org", "nbx", "--format", "json"]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert [o["org"] for o in report["organisations"]] == ["NBX"]
    assert main(["quality", "--config", config, "--month", "2026-11"]) == 0
    assert "NBDYYY" in capsys.readouterr().out
    out = project / "bulletin.html"
    assert (
        main(["quality", "--config", config, "--month", "2026-11", "--format", "html", "-o", str(out)]) == 0
    )
    assert "数据质量月度通报" in out.read_text(encoding="utf-8")
    assert main(["quality", "--config", config, "--month", "2026-1"]) == 2
