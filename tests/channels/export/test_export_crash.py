"""kill -9 during an export (and while records are collected): after a restart each record is in the
period's file exactly once, and a consumer never sees a manifest without its complete file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S
import orjson
import pytest
from engine_process import start_engine_until

from channels.export.exporter import PeriodWritten
from channels.export.outbound import ExportOutbound
from engine.config import Config
from engine.runtime import Engine

ROOT = Path(__file__).resolve().parents[3]
BATCH = (ROOT / "tests" / "samples" / "batch_adt_a04_fhs.hl7").read_bytes()  # 3 ADT^A04 (samples/README.md)
N = 500
HOUR = 3600.0


def config_text(out: Path, extra: str = "") -> str:
    return f"""
engine:
  store: {{path: var/export.db}}
  admin: {{enabled: false}}
  log: {{level: info}}
{extra}
destinations:
  - name: zone
    type: export
    routes: ["*"]
    export: {{dir: "{out}", every: 1h}}
"""


def everything(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


async def write_due(engine: Engine) -> list[PeriodWritten]:
    """Write every period up to the one in progress, as the schedule will once it has ended."""
    outbound = engine.delivery.workers["zone"].outbound
    assert isinstance(outbound, ExportOutbound)
    written: list[PeriodWritten] = await outbound.exporter.export_due(time.time() + HOUR + 10)
    return written


def lines_checked(out: Path, written: list[PeriodWritten]) -> list[dict[str, Any]]:
    """Every record of the written files, each file checked against its manifest first."""
    found = []
    for period in written:
        for f in period.files:
            data = (out / f.file).read_bytes()
            manifest = orjson.loads((out / (f.file + ".manifest.json")).read_bytes())
            assert manifest["sha256"] == hashlib.sha256(data).hexdigest()
            assert manifest["record_count"] == len(data.splitlines())
            found += [orjson.loads(x) for x in data.splitlines()]
    return found


CHILD = """
import asyncio, os, signal, sys, time
sys.path.insert(0, os.path.join(os.getcwd(), "tests", "support"))
import delivery_support as S
from engine.config import load_config
from engine.runtime import Engine

async def main():
    config, out, kill_at, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    engine = Engine(load_config(config))
    await engine.start()
    base = {"envelope": {"dataset": "person", "dataset_version": "1.0", "source_org": "ORG",
                         "source_message_id": "M", "record_time": "20261201T100000", "operation": "create"},
            "name": "测试", "sex_code": "1"}
    await S.inject(engine, records=[{**base, "patient_id": f"P{i:05d}"} for i in range(n)],
                   destinations=("zone",))
    await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM export_records HAVING count(*) = ?", n),
                     timeout=60)
    calls, real = [0], os.replace
    def replace(src, dst):
        if str(dst).startswith(out):
            calls[0] += 1
            if calls[0] == kill_at:  # 1: the data file's rename, 2: the manifest's
                os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst)
    os.replace = replace
    await engine.delivery.workers["zone"].outbound.exporter.export_due(time.time() + 3610)

asyncio.run(main())
"""


@pytest.mark.parametrize("kill_at", [1, 2], ids=["before-data-rename", "before-manifest-rename"])
async def test_kill_9_while_a_period_is_written_leaves_no_partial_file_and_the_restart_writes_it_whole(
        kill_at: int, tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "zone"
    config = make_config(config_text(out))
    argv = [sys.executable, "-c", textwrap.dedent(CHILD), str(config.file), str(out), str(kill_at), str(N)]
    child = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, timeout=180,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    left = everything(out)
    visible = [p for p in left if not Path(p).name.startswith(".")]
    if kill_at == 1:
        assert visible == []  # only the hidden temp file: a consumer sees nothing
    else:
        assert len(visible) == 1 and visible[0].endswith(".ndjson")  # complete data, no manifest yet
    assert any(Path(p).name.startswith(".") and p.endswith(".tmp") for p in left)

    engine: Engine = await engine_factory(config)
    assert not [p for p in everything(out) if p.endswith(".tmp")]  # start removed the temp files
    written = await write_due(engine)
    found = lines_checked(out, written)
    assert sorted(r["patient_id"] for r in found) == [f"P{i:05d}" for i in range(N)]  # each exactly once
    assert await S.rows(engine, "SELECT count(*) FROM export_records WHERE exported_at IS NULL") == [(0,)]


def batch_file(n: int, per_file: int = 10) -> bytes:
    """PER_FILE ADT^A04 messages with control ids F<n>-<i> (MSH-10)."""
    msg = BATCH.split(b"MSH|")[1].rsplit(b"BTS|", 1)[0]
    out = []
    for i in range(per_file):
        fields = (b"MSH|" + msg).split(b"|")
        fields[9] = f"F{n:04d}-{i:02d}".encode()
        out.append(b"|".join(fields))
    return b"".join(out)


async def test_kill_9_of_a_real_engine_while_files_are_taken_and_records_collected_exports_each_once(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop, out = tmp_path / "drop", tmp_path / "zone"
    drop.mkdir()
    extra = f"""channels:
  - {{name: drop, type: file, file: {{dirs: ["{drop}"], poll_interval: 0.05s}}}}
routes:
  - {ROOT}/mappings/adt_person.yaml
"""
    config = make_config(config_text(out, extra))
    files = 60
    for n in range(files):
        (drop / f"f{n:04d}.hl7").write_bytes(batch_file(n))
    proc, _ = await start_engine_until(config.file)
    try:
        await S.wait_for(lambda: len(list((drop / "done").glob("*"))) >= 5, timeout=60, interval=0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert len(list((drop / "done").glob("*"))) < files, "all taken before the kill; the test proves nothing"

    engine: Engine = await engine_factory(config)
    await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM export_records HAVING count(*) = ?",
                                    files * 10), timeout=120)
    written = await write_due(engine)
    exported = [r["envelope"]["source_message_id"] for r in lines_checked(out, written)]  # the message id
    stored = dict(await S.rows(engine, "SELECT id, control_id FROM messages"))
    assert sorted(stored.values()) == sorted(f"F{n:04d}-{i:02d}" for n in range(files) for i in range(10))
    assert sorted(exported) == sorted(stored)  # every message's record once, none twice
