"""`yonglink backup` copies a live store: the engine keeps running, the copy opens and holds every message."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from channels.mllp.client import MllpClient
from engine.cli import main
from engine.config import Config
from engine.runtime import Engine

CONFIG = """
engine:
  store: {path: var/live.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: his
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
"""
ADT = "MSH|^~\\&|HIS|NBH|EMPI|NB|20261101120000||ADT^A04|{cid}|P|2.5.1\rPID|1||P1^^^NBH^PI||X^Y||19900101|M\r"


async def test_a_backup_of_a_running_engine_holds_every_acked_message(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    config = make_config(CONFIG)
    engine: Engine = await engine_factory(config)
    host, port = str(engine.channels["his"].describe()["listen"]).rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        for i in range(20):
            assert b"MSA|AA|" in await client.send(ADT.format(cid=f"B{i}").encode())
        target = tmp_path / "backup" / "y.db"
        target.parent.mkdir()
        code = await asyncio.to_thread(main, ["backup", "--config", str(config.file), "--to", str(target)])
        assert code == 0
        assert b"MSA|AA|" in await client.send(ADT.format(cid="AFTER").encode())  # still serving
    copy = sqlite3.connect(target)
    ids = {row[0] for row in copy.execute("SELECT control_id FROM messages")}
    copy.close()
    assert ids == {f"B{i}" for i in range(20)}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not (tmp_path / "backup" / "y.db.partial").exists()


def test_backup_without_a_store_says_so(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "c.yaml").write_text("engine:\n  store: {path: none.db}\n", encoding="utf-8")
    assert main(["backup", "--config", str(tmp_path / "c.yaml"), "--to", str(tmp_path / "b.db")]) == 1
    assert "no store at" in capsys.readouterr().err


def test_backup_of_a_postgresql_store_says_to_use_pg_dump_and_writes_nothing(tmp_path: Path,
                                                                            capsys: Any) -> None:
    (tmp_path / "c.yaml").write_text("engine:\n  store: {backend: postgres, dsn: 'postgresql://yl@db/y'}\n",
                                     encoding="utf-8")
    assert main(["backup", "--config", str(tmp_path / "c.yaml"), "--to", str(tmp_path / "b.db")]) == 2
    err = capsys.readouterr().err
    assert "copies SQLite stores only" in err and "pg_dump -Fc" in err
    assert not (tmp_path / "b.db").exists() and not (tmp_path / "b.db.partial").exists()
