"""One inbound MLLP connection as an `asyncio.Protocol` (cheaper per message than streams).

Each complete frame takes a slot in a queue and is handed to the handler, which fills the slot with its
reply when the commit lands (a callback, no task per frame). Replies leave from the head of the queue
only, so acknowledgments go out in the order the frames arrived (a sender may pipeline) while the
commits themselves overlap and share group commits. One timer per connection enforces the idle
timeout and the read timeout of a started frame; it is rescheduled from timestamps, not reset on every
read.

Only frame bytes are activity: a read that the decoder discards entirely (bytes outside a frame, a
bare newline) does not move the idle deadline, so a peer that sends `\n` every few seconds is closed
after `idle_timeout` like a silent one. The idle timeout runs between frames, the read timeout from
a frame's start block to its end block. Log lines a peer can provoke at will (discarded bytes,
refusals) are rate-limited per channel (engine/log_throttle.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import structlog

from channels.mllp.framing import Discarded, FrameDecoder, Oversize, encode_frame
from channels.mllp.handler import Reply, best_effort_header
from engine.errors import Hl7ParseError, StoreError
from engine.types import HL7V2, InboundMessage

if TYPE_CHECKING:
    from channels.mllp.inbound import MllpInbound

log = structlog.get_logger("yonglink.mllp")

DEFAULT_MAX_IN_FLIGHT = 512
"""Frames of one connection being committed at once before reading from it pauses (backpressure)."""


class MllpConnection(asyncio.Protocol):
    """Frames in, ACKs out, in order."""

    def __init__(self, server: MllpInbound) -> None:
        self.server = server
        self.decoder = FrameDecoder(max_frame_bytes=server.max_frame_bytes, lenient=server.lenient_framing)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closed = False
        self.counted = False
        self._slots: deque[_Slot] = deque()  # frames in arrival order, each waiting for its reply
        self._idle: list[asyncio.Future[None]] = []  # `drained()` callers
        self._paused = False
        self._last_data = self.loop.time()
        self._frame_started: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server always gives a Transport (uvloop's is not registered with the asyncio ABCs).
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self.server.admit(self):
            ok, suppressed = self.server.throttle.allow("refused")
            if ok:
                log.warning("connection refused: max_connections reached", channel=self.server.name,
                            peer=self.peer, max_connections=self.server.max_connections,
                            suppressed=suppressed)
            self.closed = True
            transport.abort()
            return
        self.counted = True
        self._schedule(self._last_data + self.server.idle_timeout)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        events = self.decoder.feed(data)
        if self.decoder.in_frame or any(type(e) is not Discarded for e in events):
            self._last_data = now  # frame bytes: activity (discarded bytes are not, module docstring)
        if self.decoder.in_frame:
            if self._frame_started is None or events:
                self._frame_started = now
                self._schedule(now + self.server.read_timeout)
        else:
            self._frame_started = None
        for event in events:
            if type(event) is bytes:
                self._submit(event)
            elif isinstance(event, Discarded):
                ok, suppressed = self.server.throttle.allow("discarded")
                if ok:
                    log.warning("bytes outside an MLLP frame discarded", channel=self.server.name,
                                peer=self.peer, bytes=event.count, suppressed=suppressed)
            elif isinstance(event, Oversize):
                self._oversize(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.server.release(self)

    # --- frames ----------------------------------------------------------------------------------

    def _submit(self, payload: bytes) -> None:
        slot = self._take_slot()
        self.server.handler.submit(payload, self.peer, functools.partial(self._fill, slot))

    def _take_slot(self) -> _Slot:
        slot = _Slot(time.perf_counter())
        self._slots.append(slot)
        if len(self._slots) >= DEFAULT_MAX_IN_FLIGHT and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        return slot

    def _oversize(self, event: Oversize) -> None:
        """Store the frame's first bytes and size as `rejected`, AR it, then close (the rest is not read)."""
        self.server.context.error(f"frame larger than max_frame_bytes ({event.limit}) from {self.peer}")
        log.warning("oversize frame: stored as rejected, AR sent, connection closed",
                    channel=self.server.name, peer=self.peer, max_frame_bytes=event.limit,
                    bytes=event.size)
        slot = self._take_slot()
        if self.transport is not None:
            self.transport.pause_reading()
        task = asyncio.ensure_future(self._reject_oversize(event))
        task.add_done_callback(lambda done: self._fill(slot, done.result() if not done.cancelled()
                                                       and done.exception() is None
                                                       else Reply(None, close=True)))

    async def _reject_oversize(self, event: Oversize) -> Reply:
        exc = Hl7ParseError(f"message larger than max_frame_bytes ({event.limit} bytes)", code="207")
        head = _head_message(event.head)
        er7 = best_effort_header(head, "latin-1")
        code = "CR" if er7 is not None and er7.accept_ack_type else "AR"
        reason = (f"{exc.reason}: {event.size} bytes received when cut, the first {len(event.head)} "
                  "kept")
        msg = InboundMessage(
            channel=self.server.name, raw=event.head, content_type=HL7V2, received_at=time.time(),
            peer=self.peer, sending_facility=(er7.first(4) or None) if er7 is not None else None,
            control_id=(er7.control_id or None) if er7 is not None else None,
            message_type=(er7.message_type or None) if er7 is not None else None,
            metadata={"oversize_bytes": str(event.size), "max_frame_bytes": str(event.limit),
                      "truncated": "true"})
        try:
            await self.server.context.reject(msg, reason)
        except StoreError as err:  # still AR: the frame is unacceptable whatever the store says
            log.error("could not store an oversize frame", channel=self.server.name, error=str(err))
        ack = self.server.handler.acks.negative(er7, code, exc.reason, error_code=exc.code)
        return Reply(ack.encode("utf-8", errors="replace"), close=True)

    def _fill(self, slot: _Slot, reply: Reply) -> None:
        """A frame's reply is ready; write every reply now at the head of the queue, in order."""
        slot.reply = reply
        slots = self._slots
        if not slots or slots[0] is not slot:
            return  # an earlier frame is still being committed; its _fill writes this one too
        transport = self.transport
        while slots and slots[0].reply is not None:
            done = slots.popleft()
            ready = done.reply
            if self.closed or transport is None or ready is None:
                continue
            if ready.ack is not None:
                transport.write(encode_frame(ready.ack))
                self.server.observe_ack(time.perf_counter() - done.started)
            if ready.close:
                self.close()
        if self._paused and len(slots) < DEFAULT_MAX_IN_FLIGHT // 2 and not self.closed and transport:
            self._paused = False
            transport.resume_reading()
        if not slots and self._idle:
            for waiter in self._idle:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle.clear()

    async def drained(self) -> None:
        """Return once every frame received so far has its reply (commits in flight have landed)."""
        if self._slots:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._idle.append(waiter)
            await waiter

    @property
    def in_flight(self) -> int:
        """Frames received and not yet answered."""
        return len(self._slots)

    # --- timeouts and closing ----------------------------------------------------------------------

    def _schedule(self, when: float) -> None:
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._check_timeouts)

    def _check_timeouts(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self.loop.time()
        started = self._frame_started
        if started is not None and now - started >= self.server.read_timeout:
            log.warning("read timeout: frame incomplete, connection closed", channel=self.server.name,
                        peer=self.peer, buffered_bytes=self.decoder.buffered)
            self.close()
            return
        idle_deadline = self._last_data + self.server.idle_timeout
        if now >= idle_deadline and not self._slots:
            log.info("idle timeout: connection closed", channel=self.server.name, peer=self.peer)
            self.close()
            return
        # Still committing or waiting for the pipeline: not idle; look again within a second.
        nxt = idle_deadline if idle_deadline > now else now + min(1.0, self.server.idle_timeout)
        if started is not None:
            nxt = min(nxt, started + self.server.read_timeout)
        self._schedule(nxt)

    def close(self) -> None:
        """Close after pending writes are flushed; later ACKs of this connection are dropped."""
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


class _Slot:
    """One received frame: when it was complete, and its reply once the handler has one."""

    __slots__ = ("reply", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.reply: Reply | None = None


def _head_message(head: bytes) -> bytes:
    """The first lines of an oversize frame, cut at a segment end so MSH parses (for MSA-2)."""
    end = max(head.rfind(b"\r"), head.rfind(b"\n"))
    return head[:end] if end > 0 else head
