"""`ack: after_processing` answers from the pipeline's outcome (the context here is a recording fake)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import structlog

from channels.base import ChannelStats
from channels.mllp.handler import PROCESSING_CONTINUES, MllpHandler, Reply
from engine.hl7v2.ack import AckWriter
from engine.types import Acceptance, ChannelState, InboundMessage, MessageState, ProcessingOutcome

MSG = b"MSH|^~\\&|HIS|NBH|EMPI|NBWJW|20240101||ADT^A01^ADT_A01|AP-9|P|2.5.1\rPID|1\r"


class Context:
    """Accepts everything; `wait_processed` answers with a preset outcome (None = timed out)."""

    name, facility = "lab", "YONGLINK"

    def __init__(self, outcome: ProcessingOutcome | None) -> None:
        self.stats = ChannelStats()
        self.log = structlog.get_logger("test")
        self.outcome = outcome
        self.accepted: list[InboundMessage] = []

    async def accept(self, msg: InboundMessage) -> Acceptance:
        self.accepted.append(msg)
        return Acceptance(message_id="M1")

    def accept_soon(self, msg: InboundMessage, landed: Callable[[Acceptance | BaseException], None]) -> None:
        """The callback form of `accept` (ChannelContext contract), answered on the next loop turn."""
        async def commit() -> None:
            landed(await self.accept(msg))
        asyncio.get_running_loop().create_task(commit())

    async def reject(self, msg: InboundMessage, reason: str) -> str:
        return "R1"

    async def wait_processed(self, message_id: str, timeout: float) -> ProcessingOutcome | None:  # noqa: ASYNC109
        return self.outcome

    def error(self, text: str) -> None:
        pass

    def set_state(self, state: ChannelState) -> None:
        pass


def handler(outcome: ProcessingOutcome | None) -> MllpHandler:
    return MllpHandler(context=Context(outcome), charset=None, after_processing=True, processing_timeout=1)


async def test_a_mapping_failure_is_answered_ae_with_the_mapping_error_in_err_8() -> None:
    failed = ProcessingOutcome("M1", MessageState.FAILED, error="route adt.yaml:12: PID-3 missing")
    reply = await handler(failed).handle(MSG, "127.0.0.1:1")
    assert reply.ack is not None
    text = reply.ack.decode()
    assert "MSA|AE|AP-9|route adt.yaml:12: PID-3 missing" in text
    assert "ERR||" in text and "|207^Application internal error^HL70357|E|" in text


async def test_a_mapped_message_is_answered_aa() -> None:
    reply = await handler(ProcessingOutcome("M1", MessageState.MAPPED)).handle(MSG, "127.0.0.1:1")
    assert reply.ack is not None and "MSA|AA|AP-9|\r" in reply.ack.decode()


async def test_when_processing_takes_too_long_the_committed_message_is_answered_aa_processing_continues(
) -> None:
    reply = await handler(None).handle(MSG, "127.0.0.1:1")
    assert reply.ack is not None and f"MSA|AA|AP-9|{PROCESSING_CONTINUES}\r" in reply.ack.decode()


async def test_the_inbound_message_carries_the_header_fields_and_the_dedupe_key() -> None:
    h = handler(ProcessingOutcome("M1", MessageState.FILTERED))
    await h.handle(MSG, "10.0.0.7:5123")
    context = h.context
    assert isinstance(context, Context)
    msg = context.accepted[0]
    assert (msg.peer, msg.sending_application, msg.sending_facility, msg.control_id) == (
        "10.0.0.7:5123", "HIS", "NBH", "AP-9")
    assert (msg.message_type, msg.dedupe_key, msg.charset) == ("ADT^A01", "NBH|AP-9", None)


async def test_an_ae_for_many_long_mapping_errors_has_one_err_each_and_stays_bounded() -> None:
    """Issue #16: MSA-3 carried every error (3,958 characters) and ERR-8 repeated it: 8 KB ACKs that a
    sender reading 4 KB mismatched with the next message."""
    from engine.hl7v2.ack import ERR8_MAX, MAX_ACK_BYTES, MAX_ERR_SEGMENTS, MSA3_MAX

    errors = [f"route r{i}.yaml:12: PID-{i} " + "x" * 400 for i in range(12)]
    failed = ProcessingOutcome("M1", MessageState.FAILED, error="; ".join(errors))
    reply = await handler(failed).handle(MSG, "127.0.0.1:1")
    assert reply.ack is not None and len(reply.ack) <= MAX_ACK_BYTES
    lines = [line.split("|") for line in reply.ack.decode().split("\r") if line]
    msa = next(f for f in lines if f[0] == "MSA")
    errs = [f for f in lines if f[0] == "ERR"]
    assert msa[1:3] == ["AE", "AP-9"] and len(msa[3]) <= MSA3_MAX and msa[3].startswith("12 errors")
    assert len(errs) == MAX_ERR_SEGMENTS and all(len(e[8]) <= ERR8_MAX for e in errs)
    assert errs[0][8].startswith("route r0.yaml:12: PID-0") and errs[-1][8] == "and 3 more errors"


class SoonContext(Context):
    """Also has the engine's callback commit (`accept_soon`), answering at once."""

    def accept_soon(self, msg: InboundMessage, landed: Callable[[Acceptance | BaseException], None]) -> None:
        self.accepted.append(msg)
        landed(Acceptance(message_id="M1"))


def test_a_committed_frame_whose_ack_cannot_be_built_still_gets_an_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an answer its slot would never fill, and every later frame of the connection would wait."""
    h = MllpHandler(context=SoonContext(None), charset=None, after_processing=False, processing_timeout=1)

    def broken(*args: object, **kwargs: object) -> str:
        raise UnicodeError("encoding with 'idna' codec failed")

    monkeypatch.setattr(AckWriter, "positive", broken)
    replies: list[Reply] = []
    h.submit(MSG, "127.0.0.1:1", replies.append)
    assert len(replies) == 1 and replies[0].ack is not None and not replies[0].close
    assert "MSA|AE|AP-9|message stored, but its acknowledgment could not be built" in replies[0].ack.decode()
