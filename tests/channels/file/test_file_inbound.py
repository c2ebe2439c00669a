"""Drop-directory channel: a sender drops files, the engine takes complete ones, commits, then moves them."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S
import orjson

from engine.config import Config
from engine.runtime import Engine

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "samples"
BATCH = (SAMPLES / "batch_adt_a04_fhs.hl7").read_bytes()  # FHS/BHS batch of 3 ADT^A04 (samples/README.md)
ADT = (SAMPLES / "adt_a01_v251_utf8.hl7").read_bytes()


def config(drop: Path, extra: str = "", routes: str = "") -> str:
    return f"""
engine:
  store: {{path: var/file.db}}
  admin: {{enabled: false}}
channels:
  - name: drop
    type: file
    file:
      dirs: ["{drop}"]
      poll_interval: 0.05s
{extra}
{routes}
"""


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []


async def stored(engine: Engine, state: str | None = None) -> list[tuple[Any, ...]]:
    sql = "SELECT control_id, state, error, charset, metadata FROM messages"
    where, args = (" WHERE state = ?", (state,)) if state else ("", ())
    rows: list[tuple[Any, ...]] = await S.rows(engine, f"{sql}{where} ORDER BY seq", *args)
    return rows


async def test_a_file_still_named_tmp_is_ignored_and_taken_once_renamed(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop)))
    (drop / "adt.hl7.tmp").write_bytes(BATCH)
    (drop / "adt.hl7.part").write_bytes(BATCH[:100])
    (drop / ".adt.hl7").write_bytes(BATCH[:50])  # hidden: a sender's own temp name
    inbound: Any = engine.channels["drop"].inbound
    await S.wait_for(lambda: inbound.last_poll_at is not None and inbound.files_waiting == 0)
    await asyncio.sleep(0.2)  # several polls: still nothing taken
    assert await stored(engine) == []
    assert files(drop) == [".adt.hl7", "adt.hl7.part", "adt.hl7.tmp"]

    (drop / "adt.hl7.tmp").rename(drop / "adt.hl7")
    await S.wait_for(lambda: files(drop / "done") == ["adt.hl7"])
    rows = await stored(engine)
    assert [r[0] for r in rows] == ["XS-A04-20240327-0001", "XS-A04-20240327-0002", "XS-A04-20240327-0003"]
    assert {r[1] for r in rows} == {"filtered"}  # stored; no route configured in this test
    meta = orjson.loads(rows[0][4])
    assert meta["file"] == "adt.hl7" and len(meta["file_sha256"]) == 64
    assert files(drop) == [".adt.hl7", "adt.hl7.part"]
    status = next(c for c in engine.status()["channels"] if c["name"] == "drop")
    assert status["type"] == "file" and status["files_done"] == 1 and status["counters"]["received"] == 3


async def test_with_the_marker_rule_a_file_waits_for_its_done_marker_which_moves_along(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop, "      complete: marker")))
    (drop / "a.hl7").write_bytes(ADT)
    (drop / "b.hl7").write_bytes(BATCH)
    inbound: Any = engine.channels["drop"].inbound
    await S.wait_for(lambda: inbound.files_waiting == 2)
    await asyncio.sleep(0.2)
    assert await stored(engine) == []

    (drop / "b.hl7.ok").write_bytes(b"")   # x.hl7.ok
    (drop / "a.done").write_bytes(b"")     # x.done for x.hl7
    await S.wait_for(lambda: files(drop / "done") == ["a.done", "a.hl7", "b.hl7", "b.hl7.ok"])
    assert len(await stored(engine)) == 4 and files(drop) == []


async def test_a_slow_writer_without_temp_name_or_marker_is_read_only_once_the_file_is_stable(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    """The sender writes one message of a 3-message batch every 0.3 s, flushing each; with
    `complete: stable` and `stable_for: 1s` the engine must never see the file half written."""
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop, "      complete: stable\n"
                                                                   "      stable_for: 1s")))
    parts = BATCH.split(b"MSH|")
    chunks = [parts[0]] + [b"MSH|" + p for p in parts[1:]]
    finished = threading.Event()

    def slow_writer() -> None:
        with (drop / "slow.hl7").open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                time.sleep(0.3)
        finished.set()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        await S.wait_for(lambda: files(drop / "done") == ["slow.hl7"], timeout=30)
    finally:
        await asyncio.to_thread(writer.join)
    assert finished.is_set()
    rows = await stored(engine)
    assert [r[1] for r in rows] == ["filtered"] * 3, "the file was taken before its writer finished"
    assert (drop / "done" / "slow.hl7").read_bytes() == BATCH


async def test_an_unparseable_file_goes_to_error_with_its_reason_and_is_stored_as_rejected(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop)))
    broken = BATCH.replace(b"MSH|^~\\&|XSGH|XSXRMYY|EMPI|NBWJW|20240327080200", b"MSH|^~", 1)
    (drop / "broken.hl7").write_bytes(broken)
    (drop / "bad.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "p1"}\n{"resourceType": "Nope"}\n')
    await S.wait_for(lambda: len(files(drop / "error")) == 4)
    assert files(drop / "error") == ["bad.ndjson", "bad.ndjson.reason.txt", "broken.hl7",
                                     "broken.hl7.reason.txt"]
    assert (drop / "error" / "broken.hl7").read_bytes() == broken  # kept byte for byte
    reason = (drop / "error" / "broken.hl7.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("batch message 2:") and "sha256: " in reason
    assert (drop / "error" / "bad.ndjson.reason.txt").read_text(encoding="utf-8").startswith("line 2:")
    rows = await stored(engine)
    assert [r[1] for r in rows] == ["rejected", "rejected"]  # one row per file, nothing half-taken
    assert rows[0][2].startswith("batch message 2:")
    status = next(c for c in engine.status()["channels"] if c["name"] == "drop")
    assert status["files_error"] == 2 and status["counters"]["rejected"] == 2
    assert status["last_error"]["text"].startswith("rejected input: ")


async def test_a_gb18030_file_is_decoded_by_its_msh18_and_mapped_with_its_chinese_name(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    routes = f"destinations:\n  - {{name: sink, type: stub, routes: [\"*\"]}}\nroutes:\n" \
             f"  - {ROOT}/mappings/adt_person.yaml\n"
    engine: Engine = await engine_factory(make_config(config(drop, routes=routes)))
    raw = (SAMPLES / "adt_a01_gb18030.hl7").read_bytes()
    (drop / "gb.hl7").write_bytes(raw)
    await S.wait_for(lambda: files(drop / "done") == ["gb.hl7"])
    await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM results WHERE record IS NOT NULL"))
    (_control_id, state, _error, charset, _meta), = await stored(engine)
    assert (state, charset) == ("mapped", "GB 18030-2000")
    (record,), = await S.rows(engine, "SELECT record FROM results")
    assert orjson.loads(record)["name"] == "孙丽华"


async def test_a_gb18030_ndjson_of_fhir_resources_is_read_with_the_channel_charset(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop, "      charset: GB18030")))
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"p{i}", "name": [{"text": "王小明"}]})
             for i in range(3)]
    (drop / "patients.ndjson").write_bytes(b"\n".join(lines).decode().encode("gb18030"))
    (drop / "array.json").write_bytes(orjson.dumps([{"resourceType": "Patient", "id": "q1"},
                                                    {"resourceType": "Patient", "id": "q2"}]))
    await S.wait_for(lambda: len(files(drop / "done")) == 2)
    rows = await S.rows(engine, "SELECT control_id, raw FROM messages ORDER BY control_id")
    assert [r[0] for r in rows] == ["p0", "p1", "p2", "q1", "q2"]
    assert orjson.loads(rows[0][1])["name"][0]["text"] == "王小明"


async def test_the_same_file_dropped_again_is_recognised_by_its_content_and_stored_once(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop)))
    (drop / "day.hl7").write_bytes(BATCH)
    await S.wait_for(lambda: files(drop / "done") == ["day.hl7"])
    (drop / "day.hl7").write_bytes(BATCH)  # e.g. a sender retrying after it lost our move
    await S.wait_for(lambda: len(files(drop / "done")) == 2)
    assert len(await stored(engine)) == 3
    status = next(c for c in engine.status()["channels"] if c["name"] == "drop")
    assert status["counters"]["duplicate"] == 3 and status["counters"]["received"] == 3


async def test_a_file_that_cannot_be_moved_is_reported_without_its_name_and_the_others_go_on(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    (drop / "done").mkdir(parents=True)
    sha = hashlib.sha256(ADT).hexdigest()
    for blocked in ("patient-330203.hl7", f"patient-330203.hl7.{sha[:12]}"):
        (drop / "done" / blocked / "x").mkdir(parents=True)  # a directory where the file must go
    (drop / "patient-330203.hl7").write_bytes(ADT)
    engine: Engine = await engine_factory(make_config(config(drop)))
    (drop / "later.hl7").write_bytes(BATCH)
    await S.wait_for(lambda: "later.hl7" in files(drop / "done"))
    assert files(drop) == ["patient-330203.hl7"]  # kept in place: taken again at every poll
    status = next(c for c in engine.status()["channels"] if c["name"] == "drop")
    text = status["last_error"]["text"]
    assert text.startswith("file not taken: IsADirectoryError") and "330203" not in text
    assert status["counters"]["received"] == 4  # its message is committed (once), the batch's three too


async def test_on_linux_a_dropped_file_is_taken_at_once_without_waiting_for_the_next_poll(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    engine: Engine = await engine_factory(make_config(config(drop).replace("poll_interval: 0.05s",
                                                                           "poll_interval: 1h")))
    inbound: Any = engine.channels["drop"].inbound
    await S.wait_for(lambda: inbound.last_poll_at is not None)  # the first poll, at start, found nothing
    assert inbound.describe()["watch"] == "inotify"
    (drop / "adt.hl7.tmp").write_bytes(ADT)
    (drop / "adt.hl7.tmp").rename(drop / "adt.hl7")
    await S.wait_for(lambda: files(drop / "done") == ["adt.hl7"])  # an hour before the next poll
