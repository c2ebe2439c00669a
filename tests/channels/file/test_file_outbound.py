"""File destination: one complete file per delivery, and nothing partial after a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S
import orjson

from channels.file.outbound import FileOutbound
from engine.config import Config
from engine.runtime import Engine


async def test_records_land_as_dataset_date_and_delivery_id_files_and_pass_through_as_hl7(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "outbox"
    engine: Engine = await engine_factory(make_config(f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: outbox
    type: file
    file: {{dir: "{out}"}}
"""))
    await S.inject(engine, records=[{"patient_id": "1"}], destinations=("outbox",), dataset="person")
    await S.inject(engine, passthrough=True, destinations=("outbox",))
    await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'sent'"
                                            " HAVING count(*) = 2"))
    day = time.strftime("%Y%m%d")
    ids = dict(await S.rows(engine, "SELECT content_type, id FROM deliveries"))
    record = out / "person" / day / f"{ids['application/json']}.json"
    assert orjson.loads(record.read_bytes()) == {"patient_id": "1"}
    hl7 = out / "passthrough" / day / f"{ids['x-application/hl7-v2+er7']}.hl7"
    assert hl7.read_bytes().startswith(b"MSH|")
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted([record.name, hl7.name])


def test_a_crash_between_write_and_rename_leaves_no_partial_file_and_start_cleans_the_temp(
        tmp_path: Path) -> None:
    """The writer process is killed (SIGKILL) right before the rename, after write + fsync."""
    out = tmp_path / "outbox"
    target = out / "person" / "20240101" / "D1.json"
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        import channels.file.outbound as f
        os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        f.write_atomically(Path({str(target)!r}), b'{{"big": "' + b"x" * 100000 + b'"}}')
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3], check=False)
    assert proc.returncode == -9
    files = [p for p in out.rglob("*") if p.is_file()]
    assert [p.name for p in files] == [".D1.json.tmp"]  # hidden temp only: collectors never see it
    assert not list(out.rglob("*.json"))

    import asyncio

    dest = FileOutbound(name="outbox", settings={"dir": str(out)})
    asyncio.run(dest.start())
    assert dest.cleaned == 1 and not [p for p in out.rglob("*") if p.is_file()]
