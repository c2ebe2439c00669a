"""The MLLP channel end to end: a real engine, real sockets on 127.0.0.1, the store queried afterwards.

Each test is a sender's story: what it sends, what ACK comes back, what the store holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mllp_story import start_mllp as start_engine

from channels.mllp.client import MllpClient
from channels.mllp.framing import FrameDecoder, encode_frame
from engine.config import Config
from engine.hl7v2.charset import decode
from engine.hl7v2.encoding import DEFAULT_ENCODING, unescape
from engine.runtime import Engine
from engine.store import messages
from engine.types import MessageState

Factory = Callable[[Config], Any]
MakeConfig = Callable[[str], Config]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def adt(control_id: str, *, facility: str = "NBDYYY", accept_ack: str = "", body: str = "",
        charset: str = "") -> bytes:
    """A small ADT^A01 in original mode (MSH-15 empty) unless `accept_ack` is given."""
    msh = (f"MSH|^~\\&|HIS|{facility}|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|{control_id}|P|2.5.1|||"
           f"{accept_ack}||CHN|{charset}")
    text = f"{msh}\rEVN|A01|20240301101500\rPID|1||0001234567^^^{facility}^PI||TEST^PATIENT\r{body}"
    return text.encode("gb18030" if charset == "GB 18030-2000" else "utf-8")


def segments(ack: bytes) -> dict[str, list[str]]:
    """An ACK's segments by name (first of each), split on `|` and unescaped, for assertions."""
    out: dict[str, list[str]] = {}
    for line in ack.decode("utf-8", errors="replace").split("\r"):
        if line:
            out.setdefault(line[:3], [unescape(f, DEFAULT_ENCODING) for f in line.split("|")])
    return out


async def stored(engine: Engine) -> list[tuple[str | None, str, str | None]]:
    """(control_id, state, error) of every stored message, oldest first."""

    def query(conn: sqlite3.Connection) -> list[tuple[str | None, str, str | None]]:
        return conn.execute("SELECT control_id, state, error FROM messages ORDER BY seq").fetchall()

    return await engine.store.read(query)


class RawConnection:
    """A plain stream connection for tests that need to see exactly what comes back (or nothing)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.pending: list[bytes] = []

    @classmethod
    async def open(cls, port: int, **kwargs: Any) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
        return cls(reader, writer)

    async def send(self, payload: bytes, *, framed: bool = True) -> None:
        self.writer.write(encode_frame(payload) if framed else payload)
        await self.writer.drain()

    async def reply(self) -> bytes | None:
        """The next ACK payload, or None when the server closed the connection (10 s at most)."""
        while not self.pending:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), 10.0)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.pending.extend(e for e in self.decoder.feed(data) if isinstance(e, bytes))
        return self.pending.pop(0)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


# --- the happy path ------------------------------------------------------------------------------


async def test_2000_messages_over_4_connections_are_each_acked_aa_and_stored_exactly_once(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory)

    async def sender(n: int) -> list[tuple[str, bytes]]:
        out = []
        async with MllpClient("127.0.0.1", port, timeout=30) as client:
            for i in range(500):
                cid = f"C{n}-{i}"
                out.append((cid, await client.send(adt(cid))))
        return out

    replies = [r for chunk in await asyncio.gather(*(sender(n) for n in range(4))) for r in chunk]
    for cid, ack in replies:
        seg = segments(ack)
        assert seg["MSA"][1:3] == ["AA", cid]
        assert seg["MSH"][8] == "ACK^A01^ACK"
    rows = await stored(engine)
    assert sorted(r[0] or "" for r in rows) == sorted(cid for cid, _ in replies)
    assert engine.channels["lab"].stats.counts["received"] == 2000


async def test_the_ack_swaps_sender_and_receiver_and_echoes_version_and_control_id(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(adt("X-1")))
    msh = ack["MSH"]
    assert msh[2:6] == ["EMPI", "NBWJW", "HIS", "NBDYYY"]
    assert msh[9] and msh[9] != "X-1"  # a new MSH-10 of its own
    assert msh[10:12] == ["P", "2.5.1"]
    assert ack["MSA"][1:3] == ["AA", "X-1"] and "ERR" not in ack


async def test_a_duplicate_is_acked_aa_again_but_stored_once(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        first = segments(await client.send(adt("DUP-1")))
        again = segments(await client.send(adt("DUP-1")))
    assert first["MSA"][1] == again["MSA"][1] == "AA"
    assert [r[0] for r in await stored(engine)] == ["DUP-1"]
    assert engine.channels["lab"].stats.counts["duplicate"] == 1


async def test_pipelined_frames_on_one_connection_are_acked_in_order(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory)
    ids = [f"P-{i}" for i in range(200)]
    async with MllpClient("127.0.0.1", port) as client:
        acks = await client.send_many([adt(cid) for cid in ids])
    assert [segments(a)["MSA"][2] for a in acks] == ids


async def test_frames_answered_by_different_paths_are_still_acked_in_arrival_order(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    """A plain message is answered from its commit's callback; a rejection, a duplicate and a batch go
    through the handler's slower task path. Pipelined together, the ACKs still leave in order."""
    _, port = await start_engine(make_config, engine_factory)
    batch = (SAMPLES / "batch_adt_a04_fhs.hl7").read_bytes()
    frames = [adt("M-1"), BAD_INPUTS["no MSH"][0], adt("M-2"), batch, adt("M-1"), adt("M-3"),
              BAD_INPUTS["JSON"][0], adt("M-4")]
    async with MllpClient("127.0.0.1", port) as client:
        acks = [segments(a)["MSA"] for a in await client.send_many(frames)]
    assert [a[1] for a in acks] == ["AA", "AR", "AA", "CA", "AA", "AA", "AR", "AA"]
    assert [acks[i][2] for i in (0, 2, 4, 5, 7)] == ["M-1", "M-2", "M-1", "M-3", "M-4"]


# --- bad input ------------------------------------------------------------------------------------

BAD_INPUTS = {
    "no MSH": (b"PID|1||123^^^NBH^PI||TEST^PATIENT\r", 'payload starts with "PID", expected "MSH"'),
    "bad encoding characters": (b"MSH|^^\\&|HIS|NBH|||20240101||ADT^A01|B1|P|2.5.1\r",
                                "encoding character '^' is declared twice"),
    "truncated MSH": (b"MSH|^~\\&|HIS|NBH|||20240101\r", "MSH-8 security missing"),
    "binary garbage": (bytes(range(256)) * 2, "expected \"MSH\""),
    "JSON": (b'{"resourceType": "Patient", "id": "1"}', "looks like JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
async def test_unparseable_input_gets_ar_with_the_reason_is_stored_rejected_and_the_connection_works_on(
        case: str, make_config: MakeConfig, engine_factory: Factory) -> None:
    payload, reason = BAD_INPUTS[case]
    engine, port = await start_engine(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        bad = segments(await client.send(payload))
        good = segments(await client.send(adt("AFTER-BAD")))
    assert bad["MSA"][1] == "AR" and reason in bad["MSA"][3]
    assert reason in bad["ERR"][8] and bad["ERR"][4] == "E" and bad["ERR"][3].endswith("HL70357")
    assert good["MSA"][1:3] == ["AA", "AFTER-BAD"]
    rows = await stored(engine)
    assert rows[0][1] == "rejected" and reason in (rows[0][2] or "")
    assert rows[1][:2] == ("AFTER-BAD", "received") or rows[1][:2] == ("AFTER-BAD", "filtered")


async def test_bytes_that_do_not_decode_in_the_declared_charset_get_ar_naming_the_byte_offset(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory)
    payload = adt("CS-1", charset="UNICODE UTF-8") + b"NTE|1||\xff\xfe\r"
    offset = payload.index(b"\xff")
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(payload))
    assert ack["MSA"][1:3] == ["AR", "CS-1"]
    assert f"offset {offset}" in ack["ERR"][8] and ack["ERR"][3].startswith("102")
    assert (await stored(engine))[0][1] == "rejected"


# --- character sets -------------------------------------------------------------------------------


async def test_a_gb18030_message_is_stored_byte_exact_and_decodes_to_the_right_text(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory)
    raw = (SAMPLES / "adt_a01_gb18030.hl7").read_bytes()
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(raw))
    assert ack["MSA"][1:3] == ["CA", "NHX-A01-20240325-0017"]  # the sample asks for enhanced mode (AL)
    msg_id = await engine.store.read(lambda c: c.execute("SELECT id FROM messages").fetchone()[0])
    msg = await engine.store.read(lambda c: messages.get(c, msg_id))
    assert msg is not None and msg.raw == raw and msg.charset == "GB 18030-2000"
    assert "孙^丽华" in decode(msg.raw, msg.charset)


async def test_the_channel_charset_overrides_msh_18(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory, mllp=", charset: GB18030")
    raw = adt("GB-2", body="NTE|1||宁波\r").decode().encode("gb18030")  # no MSH-18 at all
    async with MllpClient("127.0.0.1", port) as client:
        assert segments(await client.send(raw))["MSA"][1] == "AA"
    msg_id = await engine.store.read(lambda c: c.execute("SELECT id FROM messages").fetchone()[0])
    msg = await engine.store.read(lambda c: messages.get(c, msg_id))
    assert msg is not None and msg.charset == "GB18030" and "宁波" in decode(msg.raw or b"", msg.charset)


# --- acknowledgment modes -------------------------------------------------------------------------


async def test_enhanced_mode_gets_a_commit_accept_ca(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(adt("E-1", accept_ack="AL")))
    assert ack["MSA"][1:3] == ["CA", "E-1"]


async def test_accept_ack_ne_gets_no_ack_but_the_message_is_stored_and_the_connection_works_on(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory)
    conn = await RawConnection.open(port)
    await conn.send(adt("NE-1", accept_ack="NE"))
    await conn.send(adt("AL-2", accept_ack="AL"))
    reply = await conn.reply()
    await conn.close()
    assert reply is not None and segments(reply)["MSA"][1:3] == ["CA", "AL-2"]
    assert [r[0] for r in await stored(engine)] == ["NE-1", "AL-2"]


async def test_a_batch_frame_stores_every_message_and_gets_one_ack(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send((SAMPLES / "batch_adt_a04_fhs.hl7").read_bytes()))
    assert ack["MSA"][1] == "CA" and "batch of 3 messages" in ack["MSA"][3]
    assert len(await stored(engine)) == 3


async def test_ack_after_processing_answers_aa_once_the_pipeline_decided(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory, mllp=", ack: after_processing")
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(adt("AP-1")))
    assert ack["MSA"][1:3] == ["AA", "AP-1"]
    assert (await stored(engine))[0][1] == MessageState.FILTERED.value  # no routes: filtered


# --- limits and failures --------------------------------------------------------------------------


async def test_an_oversize_frame_gets_ar_and_the_connection_is_closed(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory, mllp=", max_frame_bytes: 2KiB")
    conn = await RawConnection.open(port)
    await conn.send(adt("BIG-1", body="NTE|1||" + "X" * 5000 + "\r"))
    reply = await conn.reply()
    closed = await conn.reply()
    await conn.close()
    assert reply is not None
    ack = segments(reply)
    assert ack["MSA"][1:3] == ["AR", "BIG-1"] and "max_frame_bytes (2048 bytes)" in ack["MSA"][3]
    assert closed is None


async def test_a_store_failure_gets_no_ack_and_the_connection_is_closed(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory, store=", max_size: 256KiB")
    conn = await RawConnection.open(port)
    acked = 0
    for i in range(100):  # ~30 KB each: the store fills within a dozen messages
        await conn.send(adt(f"FULL-{i}", body="NTE|1||" + "Y" * 30_000 + "\r"))
        reply = await conn.reply()
        if reply is None:
            break
        assert segments(reply)["MSA"][1] == "AA"
        acked += 1
    await conn.close()
    assert 0 < acked < 100
    assert "store failure" in (engine.channels["lab"].stats.last_error or "")
    rows = await stored(engine)
    assert len(rows) == acked  # every AA'd message is there, the failed one is not


async def test_a_frame_that_never_ends_is_dropped_after_the_read_timeout(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory, mllp=", read_timeout: 200ms")
    conn = await RawConnection.open(port)
    await conn.send(b"\x0b" + adt("SLOW-1"), framed=False)
    assert await conn.reply() is None  # closed by the server, no ACK
    await conn.close()


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory, mllp=", idle_timeout: 200ms")
    conn = await RawConnection.open(port)
    assert await conn.reply() is None
    await conn.close()


async def test_connections_beyond_max_connections_are_refused_and_status_counts_the_open_ones(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_engine(make_config, engine_factory, mllp=", max_connections: 1")
    async with MllpClient("127.0.0.1", port) as first:
        assert segments(await first.send(adt("M-1")))["MSA"][1] == "AA"
        second = await RawConnection.open(port)
        assert await second.reply() is None
        await second.close()
        status = engine.status()["channels"][0]
        assert status["connections_open"] == 1 and status["listen"] == f"127.0.0.1:{port}"
        engine.metrics.update_from_status(engine.status(), now=time.time())  # what a /metrics scrape does
        gauge = engine.metrics.registry.get_sample_value("yonglink_connections_open", {"channel": "lab"})
        assert gauge == 1
        assert segments(await first.send(adt("M-2")))["MSA"][1] == "AA"


async def test_bytes_outside_frames_are_discarded_and_the_frames_around_them_are_acked(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_engine(make_config, engine_factory)
    conn = await RawConnection.open(port)
    await conn.send(b"noise" + encode_frame(adt("N-1")) + b"PID|secret\r" + encode_frame(adt("N-2")),
                    framed=False)
    got = [await conn.reply(), await conn.reply()]
    await conn.close()
    assert [segments(g or b"")["MSA"][2] for g in got] == ["N-1", "N-2"]


# --- TLS ------------------------------------------------------------------------------------------


def _make_certs(tmp: Path) -> Path:
    """A CA, a server cert for 127.0.0.1 and a client cert, made with the openssl CLI."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=yonglink test CA")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="ascii")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return tmp


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return _make_certs(tmp_path)


async def test_mutual_tls_accepts_a_client_with_a_cert_and_refuses_one_without(
        certs: Path, make_config: MakeConfig, engine_factory: Factory) -> None:
    tls = (f", tls: {{cert: {certs}/server.pem, key: {certs}/server.key, ca: {certs}/ca.pem, "
           "require_client_cert: true}")
    _, port = await start_engine(make_config, engine_factory, mllp=tls)
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    ctx.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    async with MllpClient("127.0.0.1", port, ssl_context=ctx) as client:
        assert segments(await client.send(adt("TLS-1")))["MSA"][1:3] == ["AA", "TLS-1"]
    anonymous = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        conn = await RawConnection.open(port, ssl=anonymous)
        await conn.send(adt("TLS-2"))
        if await conn.reply() is None:
            raise ConnectionError("closed without a reply")


# --- yonglink send --------------------------------------------------------------------------------


async def test_yonglink_send_prints_one_line_per_message_and_exits_0_when_all_are_accepted(
        tmp_path: Path, make_config: MakeConfig, engine_factory: Factory,
        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    _, port = await start_engine(make_config, engine_factory)
    lf_file = tmp_path / "one.hl7"
    lf_file.write_bytes(adt("SEND-1").replace(b"\r", b"\n"))  # LF line ends, converted to CR
    two = tmp_path / "two.hl7"
    two.write_bytes(adt("SEND-2").replace(b"\r", b"\r\n") + adt("SEND-3"))  # CRLF, two MSH
    batch = SAMPLES / "batch_adt_a04_fhs.hl7"
    code = await asyncio.to_thread(main, ["send", "--port", str(port), str(lf_file), str(two), str(batch)])
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines() if "\t" in line]
    assert code == 0
    assert [line[1:3] for line in lines[:3]] == [["SEND-1", "AA"], ["SEND-2", "AA"], ["SEND-3", "AA"]]
    assert len(lines) == 6 and all(line[2] == "CA" for line in lines[3:])


async def test_yonglink_send_exits_1_when_a_message_is_rejected(
        tmp_path: Path, make_config: MakeConfig, engine_factory: Factory,
        capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    _, port = await start_engine(make_config, engine_factory)
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(b"MSH|^~\\&|HIS|NBH|||20240101\r")
    code = await asyncio.to_thread(main, ["send", "--port", str(port), str(bad)])
    assert code == 1
    assert "\tAR\tMSH-8 security missing" in capsys.readouterr().out


async def test_rejections_and_discarded_bytes_log_no_patient_data(
        make_config: MakeConfig, engine_factory: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    _, port = await start_engine(make_config, engine_factory)
    conn = await RawConnection.open(port)
    await conn.send(b"PID|1||330203198503120171^^^CHN^NNCHN||WANG^JIANGUO\r" + encode_frame(
        b"PID|1||330203198503120171^^^CHN^NNCHN||WANG^JIANGUO\r"), framed=False)
    reply = await conn.reply()
    await conn.close()
    assert reply is not None and segments(reply)["MSA"][1] == "AR"
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "rejected input" in logged and "outside an MLLP frame" in logged
    assert "JIANGUO" not in logged and "330203198503120171" not in logged
