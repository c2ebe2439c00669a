"""kill -9 while the drop-directory channel takes files: after a restart nothing is lost or taken twice."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S
import pytest
from engine_process import start_engine_until

from engine.config import Config
from engine.runtime import Engine

ROOT = Path(__file__).resolve().parents[3]
BATCH = (ROOT / "tests" / "samples" / "batch_adt_a04_fhs.hl7").read_bytes()  # 3 ADT^A04 (samples/README.md)
FILES = 120
PER_FILE = 10


def config_text(drop: Path) -> str:
    return f"""
engine:
  store: {{path: var/crash.db}}
  admin: {{enabled: false}}
  log: {{level: info}}
channels:
  - name: drop
    type: file
    file:
      dirs: ["{drop}"]
      poll_interval: 0.05s
"""


def batch_file(n: int) -> bytes:
    """A batch of PER_FILE ADT^A04 messages with control ids F<n>-<i> (MSH-10 is field 10)."""
    msg = BATCH.split(b"MSH|")[1].rsplit(b"BTS|", 1)[0]
    out = []
    for i in range(PER_FILE):
        fields = (b"MSH|" + msg).split(b"|")
        fields[9] = f"F{n:04d}-{i:02d}".encode()
        out.append(b"|".join(fields))
    return b"".join(out)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT control_id FROM messages WHERE state != 'rejected'")]


async def test_kill_9_at_a_random_point_while_files_are_taken_loses_nothing_and_takes_nothing_twice(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(config_text(drop))
    for n in range(FILES):
        (drop / f"f{n:04d}.hl7").write_bytes(batch_file(n))
    proc, _ = await start_engine_until(config.file)
    try:
        await S.wait_for(lambda: len(files(drop / "done")) >= 5, timeout=60, interval=0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    taken_before = len(files(drop / "done"))
    assert taken_before < FILES, "every file was taken before the kill; the test proves nothing"

    engine: Engine = await engine_factory(config)
    await S.wait_for(lambda: len(files(drop / "done")) == FILES, timeout=120)
    assert files(drop) == []
    ids = [r[0] for r in await S.rows(engine, "SELECT control_id FROM messages")]
    expected = {f"F{n:04d}-{i:02d}" for n in range(FILES) for i in range(PER_FILE)}
    assert len(ids) == len(expected) and set(ids) == expected  # none lost, none stored twice


CHILD = """
import os, signal, sys
real_replace = os.replace
def replace(src, dst):
    if os.path.basename(os.path.dirname(dst)) == sys.argv[2] and os.path.basename(dst) == sys.argv[3]:
        os.kill(os.getpid(), signal.SIGKILL)  # after the commit (or reject), before the file moves
    return real_replace(src, dst)
os.replace = replace
from engine.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


@pytest.mark.parametrize(("name", "content", "target"), [
    ("day.hl7", BATCH, "done"),
    ("bad.hl7", b"MSH|^~\\&|HIS\rPID|1\r", "error"),
])
async def test_kill_9_after_the_commit_and_before_the_move_stores_the_file_once_after_restart(
        name: str, content: bytes, target: str, tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = make_config(config_text(drop))
    (drop / name).write_bytes(content)
    argv = [sys.executable, "-c", textwrap.dedent(CHILD), str(config.file), target, name]
    child = await asyncio.to_thread(subprocess.run, argv, cwd=ROOT, capture_output=True, timeout=120,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    db = tmp_path / "var" / "crash.db"
    with sqlite3.connect(db) as conn:
        before = conn.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall()
    assert files(drop) == [name]  # still there: the kill came before the move
    assert before == ([("filtered", 3)] if target == "done" else [("rejected", 1)])  # but committed

    engine: Engine = await engine_factory(config)
    await S.wait_for(lambda: name in files(drop / target))
    after = await S.rows(engine, "SELECT state, count(*) FROM messages GROUP BY state")
    assert after == before  # taken again: found by its content hash, not stored a second time
    if target == "done":
        status = next(c for c in engine.status()["channels"] if c["name"] == "drop")
        assert status["counters"]["duplicate"] == 3
    else:
        assert files(drop / "error") == [name, f"{name}.reason.txt"]
