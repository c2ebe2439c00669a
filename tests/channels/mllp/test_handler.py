"""`ack: after_processing` answers from the pipeline's outcome (the context here is a recording fake)."""

from __future__ import annotations

import structlog

from channels.base import ChannelStats
from channels.mllp.handler import PROCESSING_CONTINUES, MllpHandler
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
