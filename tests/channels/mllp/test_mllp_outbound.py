"""MLLP destination against a real MLLP receiver on loopback: each ACK answer classified by type."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import delivery_support as S
import pytest

from channels.mllp.outbound import MllpOutbound, control_id, parse_ack
from engine.config import Config
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.runtime import Engine
from engine.types import HL7V2, DeliveryItem

MSG = b"MSH|^~\\&|YL|NBH|HIS|NBH|20240101120000||ADT^A01|CTRL42|P|2.5.1\rPID|1||42^^^^PI\r"


class Receiver:
    """Answers each framed message with the next code in `answers`: AA/AE/AR/CA/CR, `wrong` (MSA-2 of
    another message) or `none` (no answer). After the script: AA. Records what it received."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.received: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                frame = await reader.readuntil(b"\x1c\r")
                msg = frame[1:-2]
                self.received.append(msg)
                answer = self.answers.pop(0) if self.answers else "AA"
                if answer == "none":
                    continue
                ref = "OTHER" if answer == "wrong" else control_id(msg)
                code = "AA" if answer == "wrong" else answer
                ack = f"MSH|^~\\&|HIS|NBH|YL|NBH|20240101||ACK^A01|A1|P|2.5.1\rMSA|{code}|{ref}|note\r"
                writer.write(b"\x0b" + ack.encode() + b"\x1c\r")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[[list[str]], Any]]:
    made: list[Receiver] = []

    async def make(answers: list[str]) -> Receiver:
        made.append(await Receiver(answers).start())
        return made[-1]

    yield make
    for r in made:
        await r.stop()


def item(payload: bytes = MSG) -> DeliveryItem:
    return DeliveryItem(delivery_id="D1", message_id="M1", destination="his", payload=payload,
                        content_type=HL7V2)


async def send_one(port: int, answer_settings: dict[str, Any] | None = None) -> Any:
    out = MllpOutbound(name="his", settings={"address": f"127.0.0.1:{port}", "ack_timeout": 0.3,
                                             **(answer_settings or {})})
    try:
        return await out.send(item())
    finally:
        await out.stop()


def test_the_control_id_and_ack_fields_are_read_from_er7() -> None:
    assert control_id(MSG) == "CTRL42"
    assert parse_ack(b"MSH|^~\\&|A|B\rMSA|AE|CTRL42|bad PID\r") == ("AE", "CTRL42", "bad PID")


async def test_aa_with_the_sent_control_id_is_success(receiver: Callable[[list[str]], Any]) -> None:
    r = await receiver(["AA"])
    result = await send_one(r.port)
    assert result.response.startswith("MSA AA") and r.received == [MSG]


async def test_ar_is_permanent(receiver: Callable[[list[str]], Any]) -> None:
    r = await receiver(["AR"])
    with pytest.raises(PermanentDeliveryError, match="rejected"):
        await send_one(r.port)


async def test_ae_is_transient_by_default_and_permanent_when_configured(
        receiver: Callable[[list[str]], Any]) -> None:
    r = await receiver(["AE", "AE"])
    with pytest.raises(TransientDeliveryError, match="MSA AE"):
        await send_one(r.port)
    with pytest.raises(PermanentDeliveryError, match="MSA AE"):
        await send_one(r.port, {"ae": "permanent"})


async def test_an_ack_for_another_control_id_is_transient(receiver: Callable[[list[str]], Any]) -> None:
    r = await receiver(["wrong"])
    with pytest.raises(TransientDeliveryError, match="does not match"):
        await send_one(r.port)


async def test_no_ack_within_the_timeout_is_transient(receiver: Callable[[list[str]], Any]) -> None:
    r = await receiver(["none"])
    with pytest.raises(TransientDeliveryError, match="no ACK"):
        await send_one(r.port)


async def test_a_refused_connection_is_transient() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(TransientDeliveryError, match="cannot connect"):
        await send_one(port)


async def test_a_json_record_is_refused_permanently_with_a_pass_through_hint() -> None:
    out = MllpOutbound(name="his", settings={"address": "127.0.0.1:9"})
    with pytest.raises(PermanentDeliveryError, match="not an HL7 v2 message"):
        await out.send(item(b'{"patient_id": "1"}'))


async def test_through_the_engine_ae_and_a_missing_ack_are_retried_until_aa_and_ar_dead_letters_at_once(
        receiver: Callable[[list[str]], Any], make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    r = await receiver(["AE", "none", "AA", "AR"])
    engine: Engine = await engine_factory(make_config(f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: his
    type: mllp
    ordering: fifo
    retry: {{initial_delay: 0.02}}
    mllp: {{address: "127.0.0.1:{r.port}", ack_timeout: 0.3}}
"""))
    raw2 = MSG.replace(b"CTRL42", b"CTRL43")
    [first] = await S.inject(engine, raw=MSG, passthrough=True, destinations=("his",))
    [second] = await S.inject(engine, raw=raw2, passthrough=True, destinations=("his",))
    [(_kind, mid, error)] = await S.wait_for(lambda: S.rows(
        engine, "SELECT kind, message_id, error FROM dead_letters"))
    assert mid == second and "MSA AR" in error
    sent = await S.rows(engine, "SELECT message_id, attempts FROM deliveries WHERE state = 'sent'")
    assert sent == [(first, 3)]
    assert r.received == [MSG, MSG, MSG, raw2]
