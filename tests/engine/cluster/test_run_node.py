"""`yonglink run` on PostgreSQL is a cluster node: what it stores carries its node id (the store's
connections name the node, engine/cluster/identity.py), and a second process with that id is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import psycopg
import pytest
from engine_process import REPO, start_engine

from channels.mllp.client import MllpClient

pytestmark = [pytest.mark.postgres]

ADT = (b"MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|C-1|P|2.5.1\r"
       b"PID|1||P001^^^NBH^PI||ZHANG^SAN||19900101|M\r")  # shape of tests/samples/adt_a01_v251_utf8.hl7


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text("""
engine:
  store: {backend: postgres, dsn: "${YONGLINK_PG_DSN}"}
  admin: {enabled: false}
  log: {format: json}
  cluster: {node_id: ward-7}
channels:
  - name: his
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
""", encoding="utf-8")
    return config


async def test_a_message_taken_in_by_yonglink_run_is_owned_by_its_node(
        tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YONGLINK_PG_DSN", pg_dsn)
    config = write_config(tmp_path)
    proc, port = await start_engine(config)
    try:
        async with MllpClient("127.0.0.1", port, timeout=10) as client:
            assert b"MSA|AA|C-1" in await client.send(ADT)
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT owner FROM messages").fetchall() == [("ward-7",)]
            [(node, pid)] = conn.execute("SELECT id, pid FROM nodes").fetchall()
        assert (node, pid) == ("ward-7", proc.pid)

        twin = await asyncio.create_subprocess_exec(  # a second `yonglink run` with the same node id
            sys.executable, "-m", "engine.cli", "run", "--config", str(config), cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
        _, err = await asyncio.wait_for(twin.communicate(), 60)
        assert twin.returncode == 1
        assert b"'ward-7' is in use by process" in err
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)

