"""Issue #16: a sender's stories in which yonglink ACKed a message and then lost it, or ACKed it wrongly.

Each test starts a real engine with one MLLP channel on 127.0.0.1:0, sends what a real sender sent, and
checks the ACK and what the store holds. Message shapes: HL7 v2.5.1 ADT^A01 (§3.3.1); the ORU with a
stray CR in OBX-5 is the shape quoted in the issue (an OLIS test message).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from mllp_story import all_segments, rows, segments, start_mllp

from channels.mllp.client import MllpClient
from engine.config import Config
from engine.store import messages
from engine.store.messages import MessageQuery

Factory = Callable[[Config], Any]
MakeConfig = Callable[[str], Config]

GB = "GB 18030-2000"
TRUNCATED_FACILITY = "陽".encode("gb18030") + b"\x96"
"""MSH-4 cut at a byte limit in the middle of 東 (GB 18030 96 7C): the lead byte 0x96 is left before
the `|`, and 0x7C is a valid GB 18030 second byte."""


def adt(control_id: str, *, facility: bytes = b"NBDYYY", charset: str = "", patient: str = "TEST^PATIENT",
        stamp: str = "20240301101523", accept_ack: str = "", codec: str = "utf-8") -> bytes:
    """A small ADT^A01; MSH-4 as raw bytes so that a damaged facility can be sent."""
    msh = (b"MSH|^~\\&|HIS|" + facility + f"|EMPI|NBWJW|{stamp}||ADT^A01^ADT_A01|{control_id}|P|2.5.1|||"
           f"{accept_ack}||CHN|{charset}".encode())
    body = f"\rEVN|A01|20240301101500\rPID|1||0001234567^^^NBDYYY^PI||{patient}\r"
    return msh + body.encode(codec)


# --- 1. GB 18030 header bytes -------------------------------------------------------------------------


async def test_a_truncated_gb18030_facility_does_not_turn_five_messages_into_duplicates(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    ids = [f"TRUNC-{i}" for i in range(5)]
    async with MllpClient("127.0.0.1", port) as client:
        acks = [segments(await client.send(adt(cid, facility=TRUNCATED_FACILITY, charset=GB,
                                               codec="gb18030")), "gb18030") for cid in ids]
    assert [a["MSA"][1:3] for a in acks] == [["AA", cid] for cid in ids]
    assert [r[0] for r in await rows(engine)] == ids
    assert engine.channels["lab"].stats.counts["duplicate"] == 0


async def test_valid_gb18030_text_in_msh_keeps_its_declared_charset(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    """東 is 96 7C in GB 18030: a split of the raw bytes on `|` would read MSH-17 as MSH-18."""
    engine, port = await start_mllp(make_config, engine_factory)
    raw = adt("GBOK-1", facility="東陽醫院".encode("gb18030"), charset=GB, patient="张^三", codec="gb18030")
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(raw), "gb18030")
    assert ack["MSA"][1:3] == ["AA", "GBOK-1"]
    assert ack["MSH"][5] == "東陽醫院"  # MSH-4 of the message is MSH-6 of the ACK
    assert await rows(engine, "control_id, sending_facility, charset") == [("GBOK-1", "東陽醫院", GB)]


# --- 2. one frame's failure stays with that frame ----------------------------------------------------


async def test_a_frame_whose_ack_cannot_be_built_does_not_stop_the_acks_of_thirty_other_connections(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    clients = [MllpClient("127.0.0.1", port) for _ in range(31)]
    for c in clients:
        await c.connect()
    try:
        frames = [adt("IDNA-1", charset="idna")] + [adt(f"OK-{i}") for i in range(30)]
        acks = await asyncio.gather(*(c.send(f) for c, f in zip(clients, frames, strict=True)))
        assert segments(acks[0])["MSA"][1:3] == ["AR", "IDNA-1"]
        assert [segments(a)["MSA"][1:3] for a in acks[1:]] == [["AA", f"OK-{i}"] for i in range(30)]
        after = segments(await clients[0].send(adt("AFTER-IDNA")))  # that connection works on
        assert after["MSA"][1:3] == ["AA", "AFTER-IDNA"]
    finally:
        for c in clients:
            await c.close()
    await engine.pipeline.drain()
    states = dict((r[0], r[1]) for r in await rows(engine))
    assert states["IDNA-1"] == "rejected"
    assert all(states[f"OK-{i}"] != "received" for i in range(30))


# --- 3. unparseable input never gets AA ------------------------------------------------------------

STRAY_CR = (b"MSH|^~\\&|ULTRA|TML|OLIS|OLIS|200905011130||ORU^R01|20169838|T|2.3\r"
            b"PID|1||7005728^^^TML^MR||TEST^RACHEL\r"
            b"OBR|1||1^TML|1^HB\r"
            b"OBX|8|ST|Test\rString||20090505||||||F\r")


@pytest.mark.parametrize("mllp", ["", ", ack: after_processing"])
async def test_a_message_broken_by_a_stray_segment_terminator_gets_ar_never_aa(
        mllp: str, make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory, mllp=mllp, store=", dedupe_window: 0s")
    frames = [adt(f"B2B-{i}") for i in range(20)]
    frames[7] = STRAY_CR
    async with MllpClient("127.0.0.1", port) as client:
        acks = [segments(a) for a in await client.send_many(frames)]
    assert acks[7]["MSA"][1:3] == ["AR", "20169838"]
    assert [a["MSA"][1] for i, a in enumerate(acks) if i != 7] == ["AA"] * 19
    stored = {r[0]: r[1] for r in await rows(engine)}
    assert stored["20169838"] == "rejected"


async def test_an_enhanced_mode_sender_gets_cr_for_input_that_cannot_be_parsed(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_mllp(make_config, engine_factory)
    raw = STRAY_CR.replace(b"|T|2.3\r", b"|T|2.3|||AL\r", 1)
    async with MllpClient("127.0.0.1", port) as client:
        assert segments(await client.send(raw))["MSA"][1:3] == ["CR", "20169838"]


# --- 4. a reused control id is a new message -----------------------------------------------------------


async def test_a_reused_control_id_with_other_content_is_stored_flagged_and_counted(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        first = segments(await client.send(adt("REUSE-1", patient="WANG^WU")))
        other = segments(await client.send(adt("REUSE-1", patient="ZHAO^LIU")))  # counter reset at restart
        retry = segments(await client.send(adt("REUSE-1", patient="ZHAO^LIU", stamp="20240301101600")))
    assert [a["MSA"][1:3] for a in (first, other, retry)] == [["AA", "REUSE-1"]] * 3
    found = await rows(engine, "id, control_id, metadata")
    assert len(found) == 2  # the retry (same content, another MSH-7) is the second one's duplicate
    assert found[0][2] is None
    assert orjson.loads(found[1][2]) == {"control_id_reused": found[0][0]}
    counts = engine.channels["lab"].stats.counts
    assert (counts["control_id_reused"], counts["duplicate"], counts["received"]) == (1, 1, 2)
    metrics = engine.metrics.render().decode()
    assert 'yonglink_messages_total{channel="lab",outcome="control_id_reused"} 1.0' in metrics


async def test_a_reused_control_id_within_one_pipelined_burst_is_still_a_new_message(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    frames = [adt("BURST-1", patient="WANG^WU"), adt("BURST-1", patient="ZHAO^LIU"),
              adt("BURST-1", patient="WANG^WU")]
    async with MllpClient("127.0.0.1", port) as client:
        acks = [segments(a)["MSA"][1:3] for a in await client.send_many(frames)]
    assert acks == [["AA", "BURST-1"]] * 3
    found = await rows(engine, "id, metadata")
    assert len(found) == 2 and orjson.loads(found[1][1]) == {"control_id_reused": found[0][0]}


# --- 6. an AR carries every header field that could be read ----------------------------------------


async def test_an_ar_for_an_empty_msh_9_echoes_the_readable_header_and_is_found_by_control_id(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    raw = b"MSH|^~\\&|HIS|NBH|EMPI|NBWJW|20240101120000|||NO-TYPE-1|T|2.4\rPID|1\r"
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(raw))
    assert ack["MSA"][1:3] == ["AR", "NO-TYPE-1"]
    assert ack["MSH"][2:6] == ["EMPI", "NBWJW", "HIS", "NBH"]
    assert ack["MSH"][10:12] == ["T", "2.4"]
    found = await engine.store.read(lambda c: messages.search(c, MessageQuery(control_id="NO-TYPE-1")))
    assert [(m.state.value, m.sending_facility) for m in found] == [("rejected", "NBH")]


# --- 5. bounded negative ACKs --------------------------------------------------------------------------


def test_an_ae_with_many_long_errors_is_bounded() -> None:
    from engine.hl7v2.ack import AckWriter
    from engine.hl7v2.header import read_header

    raw = adt("BIG-AE")
    hdr = read_header(raw.decode(), raw, "utf-8")
    errors = [f"route r{i}.yaml:12: PID-{i} " + "x" * 400 for i in range(10)]
    ack = AckWriter("T-").negative(hdr, "AE", "; ".join(errors), error_code="207", errors=errors).encode()
    segs = all_segments(ack)
    msa = next(s for s in segs if s[0] == "MSA")
    errs = [s for s in segs if s[0] == "ERR"]
    assert len(msa[3]) <= 80
    assert len(errs) == 10 and all(len(e[8]) <= 200 for e in errs)
    assert len(ack) <= 4096


# --- 7. character sets ----------------------------------------------------------------------------


async def test_an_unknown_msh_18_label_falls_back_to_utf8_when_the_bytes_decode_and_is_noted(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        ok = segments(await client.send(adt("UNK-1", charset="WINDOWS-CHINESE", patient="张^三")))
        bad = segments(await client.send(adt("UNK-2", charset="WINDOWS-CHINESE", patient="张^三",
                                             codec="gb18030")))
    assert ok["MSA"][1:3] == ["AA", "UNK-1"]
    assert bad["MSA"][1:3] == ["AR", "UNK-2"] and "WINDOWS-CHINESE" in bad["ERR"][8]
    found = await rows(engine, "control_id, state, charset, metadata")
    assert found[0][:3] == ("UNK-1", "received", "UTF-8") or found[0][:3] == ("UNK-1", "filtered", "UTF-8")
    assert "WINDOWS-CHINESE" in orjson.loads(found[0][3])["charset_note"]
    assert found[1][:2] == ("UNK-2", "rejected")


@pytest.mark.parametrize("label", ["base64", "zlib", "hex", "punycode", "idna", "undefined", "utf-8\x00x"])
async def test_a_charset_that_is_not_a_text_encoding_gets_ar_is_stored_and_the_connection_works_on(
        label: str, make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    async with MllpClient("127.0.0.1", port) as client:
        bad = segments(await client.send(adt("CS-BAD", charset=label)))
        good = segments(await client.send(adt("CS-GOOD")))
    assert bad["MSA"][1:3] == ["AR", "CS-BAD"] and bad["ERR"][3].startswith("103")
    assert good["MSA"][1:3] == ["AA", "CS-GOOD"]
    found = await rows(engine, "control_id, state")
    assert found[0] == ("CS-BAD", "rejected")


# --- 8. mixed segment terminators ----------------------------------------------------------------------


async def test_lf_separated_segments_with_one_final_cr_are_read_as_segments(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    """HL7 v2.5.1 §2.8: CR ends a segment; a text with no CR before its end uses LF (hl7v2/lines.py)."""
    engine, port = await start_mllp(make_config, engine_factory)
    raw = adt("LF-1", charset="UNICODE UTF-8").rstrip(b"\r").replace(b"\r", b"\n") + b"\r"
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(raw))
    assert ack["MSA"][1:3] == ["AA", "LF-1"]
    assert ack["MSH"][-1] == "UNICODE UTF-8"  # MSH-18 is the last field of the MSH line, not PID content
    assert await rows(engine, "control_id, message_type, charset") == [("LF-1", "ADT^A01", "UNICODE UTF-8")]


async def test_a_batch_of_lf_separated_messages_with_one_final_cr_is_split_into_its_messages(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    engine, port = await start_mllp(make_config, engine_factory)
    raw = (adt("LFB-1") + adt("LFB-2")).rstrip(b"\r").replace(b"\r", b"\n") + b"\r"
    async with MllpClient("127.0.0.1", port) as client:
        ack = segments(await client.send(raw))
    assert ack["MSA"][1:3] == ["AA", "LFB-1"] and "batch of 2" in ack["MSA"][3]
    assert [r[0] for r in await rows(engine)] == ["LFB-1", "LFB-2"]


# --- 9. smaller ----------------------------------------------------------------------------------------


async def test_an_ar_for_bad_separators_does_not_echo_the_msh_line(
        make_config: MakeConfig, engine_factory: Factory) -> None:
    _, port = await start_mllp(make_config, engine_factory)
    raw = b"MSH#^~\\&|HIS|NBH|EMPI|NBWJW|20240101||ADT^A01|SEP-1|P|2.5.1\rPID|1||110101199003070012\r"
    async with MllpClient("127.0.0.1", port) as client:
        ack = await client.send(raw)
    msa = segments(ack)["MSA"]
    assert msa[1] == "AR"
    assert b"NBWJW" not in ack and b"SEP-1" not in ack and len(msa[3]) <= 80
