"""The engine on PostgreSQL, as an operator runs it: `yonglink run` with `engine.store.backend: postgres`,
HL7 v2 over MLLP, person records delivered to an HTTP receiver; a kill -9 and a restart lose nothing; with
PostgreSQL stopped no message gets AA, and once it is back the engine takes messages again by itself."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from delivery_support import Sink
from engine_process import start_engine

from channels.mllp.client import MllpClient
from engine.errors import TransientDeliveryError

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = (ROOT / "tests" / "samples" / "adt_a01_v251_utf8.hl7").read_bytes().replace(b"\r\n", b"\r")
# the sample asks for enhanced-mode acknowledgments (MSH-15 AL, MSH-16 NE); original mode answers AA
ORIGINAL_MODE = SAMPLE.replace(b"|||AL|NE|", b"|||||", 1)
SAMPLE_ID = b"NBDYYY-ADT-20240301-000123"


def adt(control_id: str) -> bytes:
    return ORIGINAL_MODE.replace(SAMPLE_ID, control_id.encode(), 1)


def write_config(tmp_path: Path, sink_url: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
engine:
  store: {{backend: postgres, dsn: "${{YONGLINK_PG_DSN}}"}}
  admin: {{enabled: false}}
  log: {{format: json}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
destinations:
  - name: registry
    type: http
    routes: ["adt_person"]
    retry: {{initial_delay: 0.05, max_delay: 0.5, jitter: 0, max_attempts: 1000}}
    http: {{url: "{sink_url}/person"}}
routes:
  - {ROOT}/mappings/adt_person.yaml
""", encoding="utf-8")
    return config


async def send(port: int, control_id: str) -> bytes | None:
    """One message on its own connection: the ACK, or None when the engine closed without one."""
    try:
        async with MllpClient("127.0.0.1", port, timeout=10) as client:
            return await client.send(adt(control_id))
    except TransientDeliveryError:
        return None


def acked(reply: bytes | None, control_id: str) -> bool:
    return reply is not None and b"MSA|AA|" + control_id.encode() + b"|" in reply


def stored(dsn: str) -> list[tuple[str, int]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT m.control_id, count(d.id) FILTER (WHERE d.state = 'sent') FROM messages m"
            " LEFT JOIN deliveries d ON d.message_id = m.id GROUP BY m.control_id")]


async def until(check: Any, what: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - a polling deadline
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        await asyncio.sleep(0.05)


async def test_the_engine_on_postgresql_delivers_survives_kill_9_and_rides_out_a_database_restart(
        tmp_path: Path, pg_dsn: str, postgres_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YONGLINK_PG_DSN", pg_dsn)  # the config names the DSN by variable, as in production
    sink = await Sink(default=503).start()  # the receiver is down at first: deliveries stay queued
    config = write_config(tmp_path, sink.url)
    proc, port = await start_engine(config)
    everything: list[str] = []
    try:
        # 1. messages are acknowledged once committed in PostgreSQL, and queued for the receiver
        for i in range(10):
            cid = f"PG-{i}"
            assert acked(await send(port, cid), cid)
            everything.append(cid)
        await until(lambda: len(sink.requests) >= 10, "every record offered to the receiver")

        # 2. kill -9 with every delivery still queued: a new engine on the same database sends them all
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        sink.default = 200
        proc, port = await start_engine(config)
        await until(lambda: len({r.message_id for r in sink.accepted}) >= 10,
                    "every record delivered after the restart")

        # 3. PostgreSQL goes away: no AA for anything sent meanwhile
        postgres_server.stop()
        try:
            for i in range(3):
                reply = await send(port, f"DOWN-{i}")
                assert not acked(reply, f"DOWN-{i}") and (reply is None or b"MSA|AA|" not in reply)
        finally:
            postgres_server.start()

        # 4. PostgreSQL is back: the engine takes messages again by itself; the senders resend theirs
        deadline = time.monotonic() + 60
        while not acked(await send(port, "DOWN-0"), "DOWN-0"):
            assert time.monotonic() < deadline, "the engine did not recover after PostgreSQL restarted"
            await asyncio.sleep(0.2)
        everything.append("DOWN-0")
        for cid in ("DOWN-1", "DOWN-2", "AFTER"):
            assert acked(await send(port, cid), cid)
            everything.append(cid)
        await until(lambda: sorted(stored(pg_dsn)) == sorted((cid, 1) for cid in everything),
                    "every message stored once and delivered")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        await sink.stop()
    rows = dict(stored(pg_dsn))
    assert sorted(rows) == sorted(everything)  # each acknowledged message once; nothing else
    delivered = {r.message_id for r in sink.accepted}
    assert len(delivered) == len(everything)
