"""From one MLLP frame's payload to the acknowledgment to send back (HL7 v2.5.1 §2.9, Tables 0008/0155/0357).

Rules, in the order they apply:

- Character set: the channel's `charset` if set, else MSH-18, else UTF-8. Bytes that do not decode get
  AR/CR naming the byte offset (ERR-3 102).
- Unparseable input (no MSH, bad encoding characters, truncated MSH, binary data, JSON...) gets AR (CR
  in enhanced mode) with the parser's reason in MSA-3 and ERR-8; the raw bytes are stored `rejected`.
- Otherwise the message is committed (`context.accept`). Only then: AA (original mode, MSH-15 empty) or
  CA (enhanced mode, MSH-15 present: this is the *accept* acknowledgment, §2.9.3; application
  acknowledgments are not sent — the engine is not the receiving application). MSH-15 NE/ER/SU are
  honoured: no ACK where the sender did not ask for one.
- A duplicate (same MSH-4 + MSH-10 within the store's window) is answered AA again: it was committed.
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
from channels.mllp.ack import AckWriter, MshHeader, read_header
from engine.errors import CharsetError, Hl7ParseError, RejectedMessage, StoreError
from engine.hl7v2.ack import wants_ack
from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import decode, python_codec, sniff_charset
from engine.hl7v2.er7 import Er7Message
from engine.store.ingest import Landed
from engine.types import HL7V2, Acceptance, InboundMessage, MessageState

log = structlog.get_logger("yonglink.mllp")

PROCESSING_CONTINUES = "accepted; processing continues"
"""MSA-3 of the AA sent when `ack: after_processing` times out (the message is committed)."""


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
        self._codecs: dict[str, str] = {}
        # The engine's batched commit with a callback; a context without it (a test fake) gets `handle`.
        self._accept_soon: Callable[[InboundMessage, Landed], None] | None = getattr(
            context, "accept_soon", None)

    def _codec(self, label: str | None) -> str:
        if label is None:
            return "utf-8"
        codec = self._codecs.get(label)
        if codec is None:
            try:
                codec = python_codec(label)
            except LookupError:
                return "utf-8"  # decode() reports the unknown charset; the AR itself is UTF-8
            self._codecs[label] = codec
        return codec

    def submit(self, payload: bytes, peer: str, reply: Callable[[Reply], None]) -> None:
        """Answer one frame through `reply` (called once, on the loop).

        The common case (one message, a readable header, nothing to wait for but the commit) goes
        through the engine's batched `accept_soon`: the ACK is built in the commit's callback, with no
        task and no future per frame. Everything else (batches, rejections, `ack: after_processing`)
        runs `handle` as a task.
        """
        accept_soon = self._accept_soon
        if accept_soon is not None:
            received_at = time.time()
            read = self._read_single(payload)
            if read is not None and (read[0].accept_ack_type or not self.after_processing):
                hdr, label, codec = read
                msg = self._inbound(hdr, payload, label, peer, received_at)
                accept_soon(msg, functools.partial(self._landed, hdr, codec, peer, reply))
                return
        task = asyncio.ensure_future(self.handle(payload, peer))
        task.add_done_callback(functools.partial(self._handled, peer, reply))

    def _read_single(self, payload: bytes) -> tuple[MshHeader, str | None, str] | None:
        """(header, charset label, codec) of a one-message frame, or None when it needs `handle`."""
        if not payload.startswith(b"MSH") or payload.find(b"MSH", 3) >= 0:
            return None
        label = self.charset or _msh18(payload)
        codec = self._codec(label)
        try:
            return read_header(decode(payload, label), payload, codec, single=True), label, codec
        except RejectedMessage:  # handle() gives the reason (and tells binary input from bad charsets)
            return None

    def _landed(self, hdr: MshHeader, codec: str, peer: str, reply: Callable[[Reply], None],
                result: Acceptance | BaseException) -> None:
        if isinstance(result, Acceptance):
            reply(self._acknowledge(hdr, codec))
        elif isinstance(result, StoreError):
            reply(self._store_failed(result, peer))
        else:
            log.error("unexpected error committing an MLLP message", channel=self.channel, peer=peer,
                      error=type(result).__name__)
            reply(Reply(None, close=True))

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
        label = self.charset or _msh18(payload)
        codec = self._codec(label)
        try:
            text = decode(payload, label)
            single = payload.startswith(b"MSH") and payload.find(b"MSH", 3) < 0  # one scan, common case
            if not single:
                head = text.lstrip("\ufeff\r\n\t ")
                if head.startswith(("FHS", "BHS")) or "\rMSH" in head or "\nMSH" in head:
                    return await self._batch(payload, text, label, codec, peer, received_at)
            hdr = read_header(text, payload, codec, single=single)
        except CharsetError as exc:
            return await self._reject(payload, _not_hl7(payload) or exc, label, codec, peer, received_at)
        except RejectedMessage as exc:
            return await self._reject(payload, exc, label, codec, peer, received_at)
        msg = self._inbound(hdr, payload, label, peer, received_at)
        try:
            acc = await self.context.accept(msg)
        except StoreError as exc:
            return self._store_failed(exc, peer)
        return await self._positive(hdr, acc, codec)

    def _inbound(self, hdr: MshHeader, raw: bytes, label: str | None, peer: str,
                 received_at: float) -> InboundMessage:
        facility, control_id = hdr.first(4), hdr.control_id
        return InboundMessage(
            channel=self.channel, raw=raw, content_type=HL7V2, received_at=received_at, peer=peer,
            charset=label, sending_application=hdr.first(3), sending_facility=facility,
            control_id=control_id, message_type=hdr.message_type,
            dedupe_key=f"{facility}|{control_id}" if control_id else None)

    async def _positive(self, hdr: MshHeader, acc: Acceptance, codec: str, text: str = "") -> Reply:
        if self.after_processing and not hdr.accept_ack_type and not acc.duplicate:
            outcome = await self.context.wait_processed(acc.message_id, timeout=self.processing_timeout)
            if outcome is None:
                text = PROCESSING_CONTINUES
            elif outcome.state is MessageState.FAILED:
                reason = outcome.error or "mapping failed"
                ack = self.acks.negative(hdr, "AE", reason, error_code="207")
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

    async def _reject(self, payload: bytes, exc: RejectedMessage, label: str | None, codec: str,
                      peer: str, received_at: float) -> Reply:
        """Store unreadable input as `rejected` and answer AR/CR with the reason (ERR-2/3/8)."""
        er7 = best_effort_header(payload, codec)
        mode = er7.accept_ack_type.upper() if er7 is not None else ""
        code = "CR" if mode else "AR"
        log.warning("rejected input", channel=self.channel, peer=peer, bytes=len(payload),
                    error_code=exc.code, location=exc.location)
        control_id = er7.control_id if er7 is not None else None
        facility = er7.sending_facility if er7 is not None else None
        msg = InboundMessage(channel=self.channel, raw=payload, content_type=HL7V2,
                             received_at=received_at, peer=peer, charset=label,
                             sending_facility=facility or None, control_id=control_id or None,
                             message_type=(er7.message_type or None) if er7 is not None else None)
        try:
            await self.context.reject(msg, exc.reason)
        except StoreError as err:  # still answer AR: the input is unacceptable whatever the store says
            log.error("could not store rejected input", channel=self.channel, error=str(err))
        if not wants_ack(mode, code):
            return Reply(None)
        ack = self.acks.negative(er7, code, exc.reason, error_code=exc.code, location=exc.location)
        return Reply(ack.encode(codec, errors="replace"))

    async def _batch(self, payload: bytes, text: str, label: str | None, codec: str, peer: str,
                     received_at: float) -> Reply:
        """Store every message of a batch frame; one ACK for the frame (see the module docstring)."""
        try:
            parts = split_batch(text)
            headers = []
            for i, part in enumerate(parts, 1):
                try:
                    headers.append(read_header(part, payload, codec))
                except Hl7ParseError as exc:
                    raise Hl7ParseError(f"batch message {i}: {exc.reason}", code=exc.code,
                                        location=exc.location) from None
        except RejectedMessage as exc:
            return await self._reject(payload, exc, label, codec, peer, received_at)
        msgs = [self._inbound(h, part.encode(codec), label, peer, received_at)
                for h, part in zip(headers, parts, strict=True)]
        results = await asyncio.gather(*(self.context.accept(m) for m in msgs), return_exceptions=True)
        for res in results:
            if isinstance(res, StoreError):
                return self._store_failed(res, peer)
            if isinstance(res, BaseException):
                raise res
        first = results[0]
        if not isinstance(first, Acceptance):  # for mypy: exceptions were handled above
            return Reply(None, close=True)
        return await self._positive(headers[0], first, codec,
                                    text=f"batch of {len(msgs)} messages accepted")


def best_effort_header(payload: bytes, codec: str) -> Er7Message | None:
    """The received MSH if it can be read at all (for MSA-2 and the swapped sender in an AR)."""
    for attempt in (codec, "latin-1"):
        try:
            return Er7Message.parse(payload.decode(attempt))
        except (UnicodeDecodeError, LookupError, RejectedMessage):
            continue
    return None


def _not_hl7(payload: bytes) -> Hl7ParseError | None:
    """For bytes that fail to decode: the structural reason instead, when they are not HL7 at all.

    "byte 0x80 at offset 128 is not valid UTF-8" is true of binary garbage, but "payload starts with
    ..., expected MSH" is what the sender needs to hear.
    """
    if payload.lstrip(b"\xef\xbb\xbf\r\n\t ").startswith((b"MSH", b"FHS", b"BHS")):
        return None
    try:
        Er7Message.parse(payload.decode("latin-1"))
    except Hl7ParseError as exc:
        return exc
    return None


def _msh18(raw: bytes) -> str | None:
    """MSH-18 from the raw bytes (MSH is ASCII in every HL7 charset); `sniff_charset` when unusual.

    The common case — MSH first, CR-terminated — is read with two splits (~4x cheaper than the general
    `engine.hl7v2.charset.sniff_charset`, which also handles BOMs, LF ends and batches).
    """
    end = raw.find(b"\r") if raw.startswith(b"MSH") else -1
    if end < 8 or b"\n" in raw[:end]:
        return sniff_charset(raw)
    fields = raw[:end].split(raw[3:4], 18)
    if len(fields) < 18:
        return None
    value = fields[17].split(raw[5:6], 1)[0].strip()
    return value.decode("ascii", errors="replace") if value else None
