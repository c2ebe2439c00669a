"""Export destination: a period's records become one verifiable file + manifest per dataset."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S
import orjson
import pytest
from backends import SQLITE_ONLY

from channels.export import records
from channels.export.exporter import PeriodWritten
from channels.export.outbound import ExportOutbound
from engine.cli import main
from engine.config import Config
from engine.errors import ConfigError
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "samples"
BATCH = (SAMPLES / "batch_adt_a04_fhs.hl7").read_bytes()  # FHS/BHS batch of 3 ADT^A04 (samples/README.md)
PERSON = orjson.loads((SAMPLES / "records" / "person.json").read_bytes())
HOUR = 3600.0


def config(out: Path, settings: str = "", extra: str = "") -> str:
    return f"""
engine:
  store: {{path: var/export.db}}
  admin: {{enabled: false}}
{extra}
destinations:
  - name: zone
    type: export
    routes: ["*"]
    export:
      dir: "{out}"
      every: 1h
      timezone: Asia/Shanghai
{settings}
"""


def exporter_of(engine: Engine) -> Any:
    outbound = engine.delivery.workers["zone"].outbound
    assert isinstance(outbound, ExportOutbound)
    return outbound.exporter


async def collected(engine: Engine, n: int) -> None:
    await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM export_records HAVING count(*) = ?", n))


async def close_this_period(engine: Engine) -> PeriodWritten:
    """Write the period in progress as the schedule will once it has ended (no waiting an hour)."""
    written: list[PeriodWritten] = await exporter_of(engine).export_due(time.time() + HOUR + 10)
    return written[-1]


def visible(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and not p.name.startswith("."))


def check_manifest(data_file: Path) -> dict[str, Any]:
    """What a consumer does: read the manifest, then check the file against its SHA-256 and size."""
    manifest_file = data_file.with_name(data_file.name + ".manifest.json")
    manifest: dict[str, Any] = orjson.loads(manifest_file.read_bytes())
    data = data_file.read_bytes()
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["bytes"] == len(data) and manifest["file"] == data_file.name
    return manifest


async def test_a_dropped_batch_is_mapped_and_exported_as_one_ndjson_with_a_matching_manifest(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop, out = tmp_path / "drop", tmp_path / "zone"
    drop.mkdir()
    channel = f"""channels:
  - {{name: drop, type: file, file: {{dirs: ["{drop}"], poll_interval: 0.05s}}}}
routes:
  - {ROOT}/mappings/adt_person.yaml
"""
    engine: Engine = await engine_factory(make_config(config(out, extra=channel)))
    (drop / "day.hl7").write_bytes(BATCH)
    await collected(engine, 3)
    assert visible(out) == []  # nothing before the period ends

    written = await close_this_period(engine)
    (f,) = written.files
    data_file = out / f.file
    manifest = check_manifest(data_file)
    lines = data_file.read_bytes().splitlines()
    assert [orjson.loads(x)["name"] for x in lines] == ["徐振华", "胡晓红", "张伟"]
    assert manifest["record_count"] == 3 and manifest["dataset"] == "person"
    assert manifest["schema_version"] == "1.0" and manifest["encoding"] == "UTF-8"
    assert manifest["timezone"] == "Asia/Shanghai" and manifest["period_start"].endswith("+08:00")
    assert manifest["producer"]["destination"] == "zone"
    start = exporter_of(engine).schedule.label(written.period.start)
    assert f.file.startswith(f"person/{start[:8]}/person_{start}_")
    assert visible(out) == [f.file, f.file + ".manifest.json"]
    pending = await S.rows(engine, "SELECT count(*) FROM export_records WHERE exported_at IS NULL")
    assert pending == [(0,)]


async def test_an_empty_period_writes_an_empty_file_and_a_manifest_for_each_configured_dataset(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "zone"
    engine: Engine = await engine_factory(make_config(config(out, "      datasets: [person, lab_report]")))
    written = await close_this_period(engine)
    assert sorted(f.dataset for f in written.files) == ["lab_report", "person"]
    for f in written.files:
        assert (out / f.file).read_bytes() == b""
        manifest = check_manifest(out / f.file)
        assert manifest["record_count"] == 0 and manifest["sha256"] == hashlib.sha256(b"").hexdigest()


async def test_csv_in_gb18030_split_by_organisation_names_field_and_de_id_in_its_header(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "zone"
    engine: Engine = await engine_factory(make_config(config(
        out, "      format: csv\n      encoding: GB18030\n      per_organisation: true")))
    second = {**PERSON, "envelope": {**PERSON["envelope"], "source_org": "ORG-B"}, "name": "第二人"}
    await S.inject(engine, records=[PERSON, second], destinations=("zone",))
    await collected(engine, 2)
    written = await close_this_period(engine)
    by_org = {f.org: f for f in written.files}
    assert set(by_org) == {"12330200419550123X", "ORG-B"}
    f = by_org["ORG-B"]
    assert "_ORG-B_" in f.file and f.file.endswith(".csv")
    manifest = check_manifest(out / f.file)
    assert manifest["organisation"] == "ORG-B" and manifest["encoding"] == "GB18030"
    rows = list(csv.reader(io.StringIO((out / f.file).read_bytes().decode("gb18030"))))
    header, (row,) = rows[0], rows[1:]
    assert header[:2] == ["envelope.dataset", "envelope.dataset_version"]
    assert "name(DE02.01.039.00)" in header and "sex_code(DE02.01.040.00)" in header
    assert row[header.index("name(DE02.01.039.00)")] == "第二人"
    assert row[header.index("envelope.source_org")] == "ORG-B"


async def test_a_record_arriving_for_a_period_already_written_makes_it_written_again_whole(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "zone"
    engine: Engine = await engine_factory(make_config(config(out)))
    await S.inject(engine, records=[PERSON], destinations=("zone",))
    await collected(engine, 1)
    first = await close_this_period(engine)
    late = records.Collected("late-delivery", "person", "", orjson.dumps({**PERSON, "name": "迟到"}))
    await engine.store.write(lambda c: records.collect(c, "zone", [late], first.period.start + 1))
    again = await close_this_period(engine)
    assert again.period == first.period and again.marked == 1
    data_file = out / again.files[0].file
    assert check_manifest(data_file)["record_count"] == 2
    assert [orjson.loads(x)["name"] for x in data_file.read_bytes().splitlines()] == ["测试患者", "迟到"]


@SQLITE_ONLY  # `yonglink export replay` opens the store the config file names: its SQLite path here
async def test_export_replay_rewrites_a_past_period_from_the_store_byte_for_byte(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any], capsys: Any) -> None:
    out = tmp_path / "zone"
    cfg = make_config(config(out))
    engine: Engine = await engine_factory(cfg)
    past = time.time() - 2 * HOUR
    rows = [records.Collected(f"d{i}", "person", "", orjson.dumps({**PERSON, "patient_id": f"P{i}"}))
            for i in range(2)]
    await engine.store.write(lambda c: records.collect(c, "zone", rows, past))
    (written,) = await exporter_of(engine).export_due()  # a past period with records not yet exported
    data_file = out / written.files[0].file
    original = data_file.read_bytes()
    for p in out.rglob("*.ndjson*"):
        p.unlink()  # a consumer lost the files
    when = exporter_of(engine).schedule.iso(past)
    argv = ["export", "replay", "--config", str(cfg.file), "--period", when]
    assert await asyncio.to_thread(main, argv) == 0
    assert data_file.read_bytes() == original
    assert check_manifest(data_file)["record_count"] == 2
    assert "      2 records" in capsys.readouterr().out

    current = exporter_of(engine).schedule.iso(time.time())
    now = ["export", "replay", "--config", str(cfg.file), "--period", current]
    assert await asyncio.to_thread(main, now) == 1  # the period in progress cannot be replayed
    assert "only periods that have ended can be replayed" in capsys.readouterr().err


async def test_an_unknown_time_zone_stops_the_engine_with_a_config_error_naming_the_destination(
        tmp_path: Path, make_config: Callable[[str], Config]) -> None:
    engine = Engine(make_config(config(tmp_path / "zone").replace("Asia/Shanghai", "Asia/Ningbo")))
    with pytest.raises(ConfigError, match="export destination 'zone': unknown time zone 'Asia/Ningbo'"):
        await engine.start()
    await engine.stop()


async def test_retention_deletes_old_periods_files_and_their_records(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "zone"
    engine: Engine = await engine_factory(make_config(config(out, "      retention_days: 2")))
    await S.inject(engine, records=[PERSON], destinations=("zone",))
    await collected(engine, 1)
    await close_this_period(engine)
    assert len(visible(out)) == 2
    assert await exporter_of(engine).prune(time.time() + 3 * 86400) == 1
    assert visible(out) == [] and [p for p in out.iterdir()] == []
    assert await S.rows(engine, "SELECT count(*) FROM export_records") == [(0,)]


async def test_a_pass_through_route_to_an_export_is_dead_lettered_with_a_clear_reason(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(config(tmp_path / "zone")))
    await S.inject(engine, passthrough=True, destinations=("zone",))
    await S.wait_for(lambda: S.rows(engine, "SELECT error FROM dead_letters WHERE destination = 'zone'"))
    ((error,),) = await S.rows(engine, "SELECT error FROM dead_letters WHERE destination = 'zone'")
    assert "export takes dataset records only" in error


async def test_a_period_that_cannot_be_written_shows_in_status_and_is_written_once_the_disk_is_back(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "zone"
    out.mkdir()
    (out / "person").write_bytes(b"")  # a file where the dataset's directory must go
    text = config(out, "      datasets: [person]\n      grace: 0.1s").replace("every: 1h", "every: 1s")
    engine: Engine = await engine_factory(make_config(text))

    def export_status() -> dict[str, Any]:
        (dest,) = engine.status()["destinations"]
        status: dict[str, Any] = dest["export"]
        return status

    await S.wait_for(lambda: export_status()["last_error"] is not None, timeout=30)
    assert export_status()["last_error"]["text"].startswith("NotADirectoryError")
    assert export_status()["schedule"] == "every 1s" and export_status()["last_period"] is None

    (out / "person").unlink()
    await S.wait_for(lambda: export_status()["last_period"] is not None, timeout=30)
    await S.wait_for(lambda: export_status()["last_error"] is None, timeout=30)
    manifests = sorted(out.rglob("*.manifest.json"))
    assert len(manifests) >= 2  # the periods missed while failing are written too
    for m in manifests:
        check_manifest(m.with_name(m.name.removesuffix(".manifest.json")))
