"""Hostile MLLP peers are bounded, and a well-behaved sender next to them is not hurt.

Each story starts a real engine on 127.0.0.1 with short configured timeouts, lets a hostile peer do its
thing over real sockets while `NormalSender` sends ADT^A01s one at a time, then checks what the hostile
peer got (closed, refused, AR) and that every normal message got AA with a p99 ACK latency under
100 ms (a loose bound measured in the test, not a performance target: typical p99 here is a few ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import sqlite3
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hostile_support import NormalSender, adt, closed_by_server, start_mllp

from channels.mllp.client import MllpClient
from channels.mllp.framing import encode_frame
from engine.config import Config
from engine.runtime import Engine

MakeConfig = Callable[[str], Config]
Factory = Callable[[Config], Any]
P99_BOUND = 0.100


def assert_unhurt(normal: NormalSender) -> None:
    assert normal.latencies, "the normal sender sent nothing"
    assert set(normal.msa1) == {"AA"}
    assert normal.p99() < P99_BOUND, f"normal sender p99 {normal.p99() * 1000:.1f} ms"


async def rejected(engine: Engine) -> list[tuple[str | None, str, int, dict[str, str]]]:
    def query(conn: sqlite3.Connection) -> list[tuple[str | None, str, int, dict[str, str]]]:
        rows = conn.execute("SELECT control_id, error, length(raw), metadata FROM messages "
                            "WHERE state = 'rejected' ORDER BY seq").fetchall()
        return [(r[0], r[1], r[2], orjson.loads(r[3]) if r[3] else {}) for r in rows]

    return await engine.store.read(query)


def logged(capsys: pytest.CaptureFixture[str], event: str) -> int:
    out = capsys.readouterr()
    return len(re.findall(re.escape(event), out.out + out.err))


# --- connection exhaustion -------------------------------------------------------------------------


async def test_newlines_between_frames_do_not_keep_a_connection_open_past_the_idle_timeout(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    """Bytes outside a frame are not activity: `\\n` every 100 ms does not defeat a 500 ms idle timeout."""
    _, port = await start_mllp(make_config, engine_factory, ", idle_timeout: 500ms")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def drip() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                writer.write(b"\n")
                await writer.drain()
                await asyncio.sleep(0.1)

    dripping = asyncio.create_task(drip())
    try:
        assert await closed_by_server(reader, within=5.0)
    finally:
        dripping.cancel()
        writer.close()


async def test_500_idle_connections_fill_max_connections_the_rest_are_refused_with_one_log_line(
        make_config: MakeConfig, engine_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    engine, port = await start_mllp(make_config, engine_factory,
                                    ", max_connections: 501, idle_timeout: 6s")
    inbound = engine.channels["lab"].inbound
    assert inbound is not None
    async with NormalSender(port) as normal:
        await asyncio.sleep(0.2)  # the normal sender holds its connection first
        capsys.readouterr()
        idle = []
        try:
            for _ in range(520):
                idle.append(await asyncio.open_connection("127.0.0.1", port))
            # 520 + the normal sender - 501 = 20 refused (closed at once); the 500 others stay open
            # until the idle timeout.
            await asyncio.sleep(0.2)
            assert inbound.describe()["connections_refused"] == 20
            assert engine.status()["channels"][0]["connections_open"] == 501
            assert logged(capsys, "connection refused: max_connections reached") == 1
            # Idle connections, newline-dripping or silent, are closed at the idle timeout; a new sender
            # then gets in.
            for _, w in idle[:250]:
                w.write(b"\r\n")
            assert all(await asyncio.gather(*(closed_by_server(r, within=20.0) for r, _ in idle)))
            async with MllpClient("127.0.0.1", port, timeout=5.0) as late:
                assert b"\rMSA|AA|LATE-1" in await late.send(adt("LATE-1"))
        finally:
            for _, w in idle:
                w.close()
            await asyncio.sleep(0)
    assert_unhurt(normal)


# --- slow and endless frames ----------------------------------------------------------------------------


async def test_a_slowloris_frame_one_byte_at_a_time_is_closed_by_the_read_timeout(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_mllp(make_config, engine_factory, ", read_timeout: 1s, idle_timeout: 30s")
    async with NormalSender(port) as normal:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = b"\x0b" + adt("SLOW-1")

        async def drip() -> None:
            with contextlib.suppress(ConnectionError, OSError):
                for byte in payload:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.3)

        dripping = asyncio.create_task(drip())
        try:
            assert await closed_by_server(reader, within=5.0)
        finally:
            dripping.cancel()
            writer.close()
    assert_unhurt(normal)


async def test_a_frame_start_that_never_ends_is_closed_by_the_read_timeout(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_mllp(make_config, engine_factory, ", read_timeout: 500ms")
    async with NormalSender(port) as normal:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x0b" + adt("NEVER-1"))
        assert await closed_by_server(reader, within=5.0)
        writer.close()
    assert_unhurt(normal)


async def test_100_mb_without_an_end_block_is_cut_at_max_frame_bytes_with_bounded_memory(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    """The frame is cut at 1 MiB: stored as rejected (first bytes and size), AR'd, the connection closed;
    the process does not grow by anything like the 100 MB sent."""
    engine, port = await start_mllp(make_config, engine_factory, ", max_frame_bytes: 1MiB")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    chunk = b"A" * (1024 * 1024)
    async with NormalSender(port) as normal:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = 0
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(b"\x0b" + adt("HUGE-1") + b"NTE|1||")
            for _ in range(100):
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
        assert await closed_by_server(reader, within=10.0)
        writer.close()
    assert sent < 100 * len(chunk)  # the server stopped reading long before the end
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mib < 40, f"RSS grew {grown_mib:.0f} MiB"
    (row,) = await rejected(engine)
    control_id, error, raw_len, meta = row
    assert control_id == "HUGE-1" and "max_frame_bytes" in error
    assert raw_len <= 4096 and int(meta["oversize_bytes"]) > 1024 * 1024
    assert_unhurt(normal)


async def test_an_oversize_frame_is_stored_as_rejected_with_its_first_bytes_and_size(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory, ", max_frame_bytes: 2KiB")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_frame(adt("BIG-2", body="NTE|1||" + "x" * 5000 + "\r")))
    ack = await asyncio.wait_for(reader.read(65536), 5.0)
    writer.close()
    assert b"\rMSA|AR|BIG-2|" in ack
    (row,) = await rejected(engine)
    assert row[0] == "BIG-2" and row[2] <= 4096
    assert row[3]["max_frame_bytes"] == "2048" and int(row[3]["oversize_bytes"]) > 2048


# --- big but legal messages -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    "".join(f"OBX|{i}|NM|718-7^Hemoglobin^LN||{i % 200}|g/L|||||F\r" for i in range(1, 10_001)),
    "NTE|1||" + "~".join(f"r{i}" for i in range(20_000)) + "\r",
    "NTE|1||" + "^".join("&".join(["s"] * 50) for _ in range(200)) + "\r",
], ids=["10000-segments", "20000-repetitions", "deep-components"])
async def test_a_huge_but_legal_message_is_accepted_while_a_normal_sender_is_unhurt(
        make_config: MakeConfig, engine_factory: Factory, body: str) -> None:
    engine, port = await start_mllp(make_config, engine_factory, ", max_frame_bytes: 2MiB")
    async with NormalSender(port) as normal:
        async with MllpClient("127.0.0.1", port, timeout=30.0) as big:
            for n in range(3):
                assert b"\rMSA|AA|BIG-" in await big.send(adt(f"BIG-{n}", body=body))
    rows = await engine.store.read(lambda c: c.execute(
        "SELECT count(*) FROM messages WHERE control_id LIKE 'BIG-%'").fetchone()[0])
    assert rows == 3
    assert_unhurt(normal)


# --- log floods ---------------------------------------------------------------------------------------


async def test_junk_between_frames_is_logged_once_per_interval_not_once_per_read(
        make_config: MakeConfig, engine_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    _, port = await start_mllp(make_config, engine_factory)
    capsys.readouterr()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for n in range(30):  # each junk + frame in its own read: the ACK comes back before the next
        writer.write(b"junk" + encode_frame(adt(f"J-{n}")))
        await writer.drain()
        assert b"\rMSA|AA|" in await asyncio.wait_for(reader.read(65536), 5.0)
    writer.close()
    assert logged(capsys, "bytes outside an MLLP frame discarded") == 1


# --- lenient framing ----------------------------------------------------------------------------------


async def test_lenient_framing_accepts_a_sender_that_ends_with_fs_alone_and_omits_vt(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_mllp(make_config, engine_factory, ", framing: lenient, read_timeout: 5s")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x0b" + adt("LEN-1") + b"\x1c")  # no CR after FS
    assert b"\rMSA|AA|LEN-1" in await asyncio.wait_for(reader.read(65536), 3.0)
    writer.write(adt("LEN-2") + b"\x1c\r")  # no VT
    assert b"\rMSA|AA|LEN-2" in await asyncio.wait_for(reader.read(65536), 3.0)
    writer.write(encode_frame(adt("LEN-3")))  # a conforming frame still works
    assert b"\rMSA|AA|LEN-3" in await asyncio.wait_for(reader.read(65536), 3.0)
    writer.close()


async def test_strict_framing_is_the_default_and_fs_alone_does_not_end_a_frame(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory, ", read_timeout: 500ms")
    assert engine.channels["lab"].inbound.describe()["framing"] == "strict"  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x0b" + adt("STRICT-1") + b"\x1c")
    assert await asyncio.wait_for(reader.read(65536), 3.0) == b""  # closed by the read timeout, no ACK
    writer.close()
