"""An AA means committed: kill -9 the engine while senders stream messages, and every AA'd one survives.

The engine runs as a real subprocess (`python -m engine.cli run`); the senders record each control id
that came back AA; after the kill the engine is restarted on the same store, accepts again, and the
SQLite file is opened directly to check that every AA'd control id is in it.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest
from engine_process import start_engine

from channels.mllp.client import MllpClient
from engine.errors import TransientDeliveryError

REPO = Path(__file__).resolve().parents[3]
CONNECTIONS = 4
KILL_AFTER_ACKS = 100


def message(control_id: str) -> bytes:
    return (f"MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|{control_id}|P|2.5.1\r"
            "EVN|A01|20240301101500\rPID|1||0001234567^^^NBDYYY^PI||TEST^PATIENT\r").encode()


async def sender(port: int, n: int, acked: list[str], enough: asyncio.Event, target: int) -> None:
    """Send until the engine dies; record each control id that got AA, set `enough` at `target`."""
    try:
        async with MllpClient("127.0.0.1", port, timeout=10) as client:
            i = 0
            while True:
                cid = f"K{n}-{i}"
                ack = await client.send(message(cid))
                if b"MSA|AA|" + cid.encode() + b"|" in ack:
                    acked.append(cid)
                    if len(acked) >= target:
                        enough.set()
                i += 1
    except TransientDeliveryError:
        pass  # the kill: connection reset or closed


@pytest.mark.slow
@pytest.mark.parametrize("round_", [1, 2, 3])
async def test_every_message_acked_before_a_kill_minus_9_is_in_the_store_after_restart(
        round_: int, tmp_path: Path) -> None:
    store = tmp_path / "var" / "crash.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"""
engine:
  store: {{path: {store}}}
  admin: {{enabled: false}}
  log: {{format: json}}
channels:
  - name: lab
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
""", encoding="utf-8")
    proc, port = await start_engine(config)
    acked: list[str] = []
    enough = asyncio.Event()
    target = KILL_AFTER_ACKS * round_  # a different point of the stream each round
    senders = [asyncio.create_task(sender(port, n, acked, enough, target)) for n in range(CONNECTIONS)]
    try:
        await asyncio.wait_for(enough.wait(), 30)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-stream: frames are in flight on every connection
        await proc.wait()
    async with asyncio.timeout(15):
        await asyncio.gather(*senders)
    assert proc.returncode == -signal.SIGKILL and len(acked) >= KILL_AFTER_ACKS

    again, port = await start_engine(config)  # restart on the same store: recovery, then accepting
    try:
        async with MllpClient("127.0.0.1", port, timeout=10) as client:
            assert b"MSA|AA|AFTER-RESTART|" in await client.send(message("AFTER-RESTART"))
    finally:
        again.send_signal(signal.SIGTERM)
        assert await again.wait() == 0

    with sqlite3.connect(store) as conn:
        ids = {row[0] for row in conn.execute("SELECT control_id FROM messages")}
    conn.close()
    missing = [cid for cid in acked if cid not in ids]
    assert not missing, f"{len(missing)} of {len(acked)} AA'd messages lost: {missing[:5]}"
    assert "AFTER-RESTART" in ids
