"""From one MLLP frame's payload to the acknowledgment to send back (HL7 v2.5.1 §2.9, Tables 0008/0155/0357).

Rules, in the order they apply:

- Reading the frame — character set, header, batch split, dedupe key, content identity — follows the
  inbound HL7 v2 rules every channel shares (`engine.hl7v2.inbound`). Bytes that do not decode get
  AR/CR naming the byte offset (ERR-3 102).
- Unparseable input (no MSH, bad encoding characters, truncated MSH, a line that is not a segment,
  binary data, JSON...) gets AR (CR in enhanced mode) with the reason in MSA-3 (cut at 80 characters)
  and ERR-8, echoing every header field that could be read (MSH-10 in MSA-2); the raw bytes are
  stored `rejected` with that control id. Whatever the ACK mode, never AA.
- Otherwise the message is committed (`context.accept`). Only then: AA (original mode, MSH-15 empty) or
  CA (enhanced mode, MSH-15 present: this is the *accept* acknowledgment, §2.9.3; application
  acknowledgments are not sent — the engine is not the receiving application). MSH-15 NE/ER/SU are
  honoured: no ACK where the sender did not ask for one.
- A duplicate (same MSH-4 + MSH-10 and the same content within the store's window) is answered AA
  again: it was committed. The same MSH-4 + MSH-10 with other content is a new message (a reused
  control id, flagged and counted by the store).
- A store failure (`StoreError`) gets no ACK at all and the connection is closed, so the sender resends.
- `ack: after_processing` (original mode only) waits for the pipeline: AA when mapped or filtered, AE
  with the mapping error (ERR-3 207) when failed. When `processing_timeout` expires first, the answer is
  AA with MSA-3 "accepted; processing continues": the message *is* committed and will be processed, so
  an error code would only make the sender resend it (and the resend would be a duplicate).
- A batch in one frame (FHS/BHS envelope, or several MSH): every message is stored on its own (one group
  commit), and the frame gets ONE acknowledgment built from the first message's MSH, its MSA-2 that
  message's control id and MSA-3 "batch of N messages accepted". If any message in it is unreadable the
  whole frame is rejected (stored once as `rejected`), so a sender never has to resend half a batch.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from channels.base import ChannelContext
from engine.errors import RejectedMessage, StoreError
from engine.hl7v2.ack import AckWriter, wants_ack
from engine.hl7v2.charset import decode
from engine.hl7v2.header import MshHeader, best_effort_header, read_header
from engine.hl7v2.inbound import (
    CharsetChoice,
    Hl7Payload,
    choose_charset,
    inbound_message,
    read_payload,
    rejected_message,
)
from engine.store.ingest import Landed
from engine.types import Acceptance, InboundMessage, MessageState

__all__ = ["PROCESSING_CONTINUES", "MllpHandler", "Reply", "best_effort_header"]

log = structlog.get_logger("yonglink.mllp")

PROCESSING_CONTINUES = "accepted; processing continues"
"""MSA-3 of the AA sent when `ack: after_processing` times out (the message is committed)."""
ERROR_SEPARATOR = "; "
"""How `engine.pipeline.decide` joins the errors of a failed message (one ERR segment each)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What to write back for one frame (None: nothing) and whether to close the connection after."""

    ack: bytes | None
    close: bool = False


class MllpHandler:
    """Turns payloads into committed messages and ACK bytes; one per channel, shared by connections."""

    def __init__(self, *, context: ChannelContext, charset: str | None, after_processing: bool,
                 processing_timeout: float) -> None:
        self.context = context
        self.channel = context.name
        self.charset = charset or None
        self.after_processing = after_processing
        self.processing_timeout = processing_timeout
        self.acks = AckWriter(f"{context.facility[:8]}{int(time.time() * 1000) % 10**9:09d}-")
        # The engine's batched commit answered through a callback (ChannelContext.accept_soon).
        self._accept_soon: Callable[[InboundMessage, Landed], None] = context.accept_soon

    def submit(self, payload: bytes, peer: str, reply: Callable[[Reply], None]) -> None:
        """Answer one frame through `reply` (called once, on the loop).

        The common case (one message, a readable header, nothing to wait for but the commit) goes
        through the engine's batched `accept_soon`: the ACK is built in the commit's callback, with no
        task and no future per frame. Everything else (batches, rejections, `ack: after_processing`)
        runs `handle` as a task.
        """
        received_at = time.time()
        read = self._read_single(payload)
        if read is not None and (read[0].accept_ack_type or not self.after_processing):
            hdr, choice = read
            msg = inbound_message(hdr, payload, choice, channel=self.channel, received_at=received_at,
                                  peer=peer)
            self._accept_soon(msg, functools.partial(self._landed, hdr, choice.codec, peer, reply))
            return
        task = asyncio.ensure_future(self.handle(payload, peer))
        task.add_done_callback(functools.partial(self._handled, peer, reply))

    def _read_single(self, payload: bytes) -> tuple[MshHeader, CharsetChoice] | None:
        """Header and charset of a one-message frame, or None when it needs `handle`."""
        if not payload.startswith(b"MSH") or payload.find(b"MSH", 3) >= 0:
            return None
        try:
            choice = choose_charset(payload, self.charset)
            text = decode(payload, choice.label)
            return read_header(text, payload, choice.codec, single=True), choice
        except RejectedMessage:  # handle() gives the reason (and tells binary input from bad charsets)
            return None

    def _landed(self, hdr: MshHeader, codec: str, peer: str, reply: Callable[[Reply], None],
                result: Acceptance | BaseException) -> None:
        try:
            if isinstance(result, Acceptance):
                answer = self._acknowledge(hdr, codec)
            elif isinstance(result, StoreError):
                answer = self._store_failed(result, peer)
            else:
                log.error("unexpected error committing an MLLP message", channel=self.channel, peer=peer,
                          error=type(result).__name__)
                answer = Reply(None, close=True)
        except Exception as exc:  # this frame's failure stays with this frame
            answer = self._unanswerable(hdr, exc, peer)
        reply(answer)

    def _unanswerable(self, hdr: MshHeader, exc: Exception, peer: str) -> Reply:
        """The message is committed but its ACK could not be built: AE in UTF-8 without the header's
        charset, so the sender sees an error for this frame and the connection works on."""
        log.error("acknowledgment could not be built", channel=self.channel, peer=peer,
                  error=type(exc).__name__)
        self.context.error(f"acknowledgment could not be built: {type(exc).__name__}")
        text = "message stored, but its acknowledgment could not be built"
        try:
            ack = self.acks.negative(hdr, "AE", text, error_code="207")
        except Exception:  # not even from the header: a bare AE
            ack = self.acks.negative(None, "AE", text, error_code="207")
        return Reply(ack.encode("utf-8", errors="replace"))

    def _handled(self, peer: str, reply: Callable[[Reply], None], task: asyncio.Future[Reply]) -> None:
        if task.cancelled():
            reply(Reply(None, close=True))
            return
        exc = task.exception()
        if exc is not None:
            log.error("unexpected error handling an MLLP frame", channel=self.channel, peer=peer,
                      exc_info=exc)
            reply(Reply(None, close=True))
            return
        reply(task.result())

    async def handle(self, payload: bytes, peer: str) -> Reply:
        """Commit (or reject) one frame's payload and return the acknowledgment to send."""
        received_at = time.time()
        read = read_payload(payload, charset=self.charset)
        if read.error is not None:
            return await self._reject(payload, read, read.error, peer, received_at)
        choice = read.charset
        msgs = [inbound_message(hdr, raw, choice, channel=self.channel, received_at=received_at, peer=peer)
                for hdr, raw in read.messages]
        results = await asyncio.gather(*(self.context.accept(m) for m in msgs), return_exceptions=True)
        for res in results:
            if isinstance(res, StoreError):
                return self._store_failed(res, peer)
            if isinstance(res, BaseException):
                raise res
        first = results[0]
        if not isinstance(first, Acceptance):  # for mypy: exceptions were handled above
            return Reply(None, close=True)
        text = f"batch of {len(msgs)} messages accepted" if read.batch else ""
        return await self._positive(read.messages[0][0], first, choice.codec, text)

    async def _positive(self, hdr: MshHeader, acc: Acceptance, codec: str, text: str = "") -> Reply:
        if self.after_processing and not hdr.accept_ack_type and not acc.duplicate:
            outcome = await self.context.wait_processed(acc.message_id, timeout=self.processing_timeout)
            if outcome is None:
                text = PROCESSING_CONTINUES
            elif outcome.state is MessageState.FAILED:
                errors = (outcome.error or "mapping failed").split(ERROR_SEPARATOR)
                summary = errors[0] if len(errors) == 1 else f"{len(errors)} errors; first: {errors[0]}"
                ack = self.acks.negative(hdr, "AE", summary, error_code="207", errors=errors)
                return Reply(ack.encode(codec, errors="replace"))
        return self._acknowledge(hdr, codec, text)

    def _acknowledge(self, hdr: MshHeader, codec: str, text: str = "") -> Reply:
        """AA (original mode) or CA (enhanced), unless MSH-15 says the sender wants none."""
        mode = hdr.accept_ack_type
        code = "CA" if mode else "AA"
        if not wants_ack(mode, code):
            return Reply(None)
        return Reply(self.acks.positive(hdr, code, text).encode(codec, errors="replace"))

    def _store_failed(self, exc: StoreError, peer: str) -> Reply:
        self.context.error(f"store failure, connection closed without ACK: {exc}")
        log.error("store failure: no ACK sent, closing the connection", channel=self.channel, peer=peer,
                  error=str(exc))
        return Reply(None, close=True)

    async def _reject(self, payload: bytes, read: Hl7Payload, exc: RejectedMessage, peer: str,
                      received_at: float) -> Reply:
        """Store unreadable input as `rejected` and answer AR/CR with the reason (ERR-2/3/8)."""
        hdr = read.header
        mode = hdr.accept_ack_type if hdr is not None else ""
        code = "CR" if mode else "AR"
        log.warning("rejected input", channel=self.channel, peer=peer, bytes=len(payload),
                    error_code=exc.code, location=exc.location)
        msg = rejected_message(read, payload, channel=self.channel, received_at=received_at, peer=peer)
        try:
            await self.context.reject(msg, exc.reason)
        except StoreError as err:  # still answer AR: the input is unacceptable whatever the store says
            log.error("could not store rejected input", channel=self.channel, error=str(err))
        if not wants_ack(mode, code):
            return Reply(None)
        ack = self.acks.negative(hdr, code, exc.reason, error_code=exc.code, location=exc.location)
        return Reply(ack.encode(read.charset.codec, errors="replace"))
