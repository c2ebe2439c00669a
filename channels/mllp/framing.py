"""MLLP framing (HL7 v2.5.1 Appendix C, Minimal Lower Layer Protocol release 2): ``<VT> payload <FS><CR>``.

`FrameDecoder` is a pure, incremental decoder: feed it whatever one `recv` returned and it returns the
events found so far (complete frames, discarded bytes, an oversize frame). It keeps no socket and no
clock, so it is tested by feeding bytes, and the channel and the client share it.

Rules:
- bytes outside a frame (before a start block) are discarded and reported as `Discarded(count)`, never
  their content (they may hold patient data);
- a ``<FS>`` not followed by ``<CR>`` is payload (Appendix C says the end block is both bytes);
- a frame whose payload grows past ``max_frame_bytes`` yields `Oversize` once; the decoder then skips to
  the end of that frame and carries on (the channel closes the connection anyway);
- a new ``<VT>`` inside a frame is payload too: MLLP has no escaping, and binary garbage can contain one.

Lenient mode (`lenient=True`, the channel's `framing: lenient`; off by default) is for senders that
break Appendix C in the two ways seen in the field: ending a frame with ``<FS>`` alone, and omitting
``<VT>``. Then a frame ends at the first ``<FS>`` (a ``<CR>`` right after it is consumed with it), and
outside a frame the first byte that is not CR/LF starts one (a ``<VT>`` there is consumed). The price:
an ``<FS>`` can no longer be payload, and junk between frames is no longer discarded but answered and
stored as a (rejected) frame of its own. Strict senders work unchanged in lenient mode.
"""

from __future__ import annotations

from dataclasses import dataclass

START_BLOCK = b"\x0b"
"""<VT>, 0x0B: opens a frame."""
END_BLOCK = b"\x1c\x0d"
"""<FS><CR>, 0x1C 0x0D: closes a frame."""
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
"""Largest payload accepted in one frame (1 MiB); more gets an AR and the connection is closed."""


@dataclass(frozen=True, slots=True)
class Discarded:
    """`count` bytes were received outside any frame and dropped."""

    count: int


@dataclass(frozen=True, slots=True)
class Oversize:
    """A frame exceeded the limit; `head` is its first bytes (enough to read the MSH and ACK it)."""

    head: bytes
    limit: int
    size: int = 0
    """Payload bytes of the frame received when it was cut (at least `limit` + 1)."""


Event = bytes | Discarded | Oversize
"""What `FrameDecoder.feed` returns: a frame's payload (bytes), or a `Discarded` / `Oversize` notice."""

_HEAD_BYTES = 4096


def encode_frame(payload: bytes) -> bytes:
    """Wrap one payload in MLLP start and end blocks."""
    return START_BLOCK + payload + END_BLOCK


class FrameDecoder:
    """Incremental MLLP decoder for one connection."""

    __slots__ = ("_buf", "_in_frame", "_skipping", "lenient", "max_frame_bytes")

    def __init__(self, *, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, lenient: bool = False) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        self.max_frame_bytes = max_frame_bytes
        self.lenient = lenient
        self._buf = bytearray()  # payload of the open frame (or partial end block)
        self._in_frame = False
        self._skipping = False  # inside an oversize frame: drop until its end block

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but not ended (for the channel's read timeout)."""
        return self._in_frame

    @property
    def buffered(self) -> int:
        """Payload bytes held for the open frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Event]:
        """Consume ``data``; return the events it completes, in order."""
        if self.lenient:
            return self._feed_lenient(data)
        events: list[Event] = []
        pos, n = 0, len(data)
        while pos < n:
            if not self._in_frame:
                start = data.find(START_BLOCK, pos)
                if start < 0:
                    _discard(events, data, pos, n)
                    break
                if start > pos:
                    _discard(events, data, pos, start)
                self._in_frame = True
                pos = start + 1
                if not self._buf and pos < n:  # fast path: the whole frame is in this read
                    end = data.find(END_BLOCK, pos)
                    if 0 <= end and end - pos <= self.max_frame_bytes:
                        events.append(data[pos:end])
                        self._in_frame = False
                        pos = end + 2
                        continue
                continue
            pos = self._continue_frame(data, pos, events)
        return events

    def _continue_frame(self, data: bytes, pos: int, events: list[Event]) -> int:
        """Add bytes to the open frame; return the position after what was consumed."""
        buf = self._buf
        # The end block may straddle reads: search from one byte back into the buffer.
        back = 1 if buf and buf[-1:] == b"\x1c" else 0
        if back:
            if data[pos:pos + 1] == b"\r":
                del buf[-1]
                if self._skipping:
                    self._in_frame, self._skipping = False, False
                else:
                    self._finish(events)
                return pos + 1
        end = data.find(END_BLOCK, pos)
        stop = len(data) if end < 0 else end
        if self._skipping:
            if end >= 0:
                self._in_frame, self._skipping = False, False
                buf.clear()
                return end + 2
            buf[:] = data[-1:] if data[-1:] == b"\x1c" else b""  # keep a possible half end block
            return len(data)
        buf += data[pos:stop]
        if len(buf) > self.max_frame_bytes + (0 if end >= 0 else 1):
            events.append(Oversize(head=bytes(buf[:_HEAD_BYTES]), limit=self.max_frame_bytes,
                                   size=len(buf)))
            buf.clear()
            if end >= 0:
                self._in_frame = False
                return end + 2
            self._skipping = True
            if data[-1:] == b"\x1c":
                buf += b"\x1c"
            return len(data)
        if end < 0:
            return len(data)
        self._finish(events)
        return end + 2

    def _feed_lenient(self, data: bytes) -> list[Event]:
        """`feed` in lenient mode: ``<FS>`` alone ends a frame, ``<VT>`` is optional (module docstring)."""
        events: list[Event] = []
        pos, n = 0, len(data)
        buf = self._buf
        while pos < n:
            if not self._in_frame:
                while pos < n and data[pos] in b"\r\n":
                    pos += 1
                if pos >= n:
                    break
                self._in_frame = True
                if data[pos] == 0x0B:
                    pos += 1
                continue
            end = data.find(b"\x1c", pos)
            stop = n if end < 0 else end
            if not self._skipping:
                buf += data[pos:stop]
                if len(buf) > self.max_frame_bytes:
                    events.append(Oversize(head=bytes(buf[:_HEAD_BYTES]), limit=self.max_frame_bytes,
                                           size=len(buf)))
                    buf.clear()
                    self._skipping = True
            if end < 0:
                break
            pos = end + 1
            if pos < n and data[pos] == 0x0D:
                pos += 1
            if self._skipping:
                self._skipping = False
                buf.clear()
                self._in_frame = False
            else:
                self._finish(events)
        return events

    def _finish(self, events: list[Event]) -> None:
        events.append(bytes(self._buf))
        self._buf.clear()
        self._in_frame = False


def _discard(events: list[Event], data: bytes, start: int, stop: int) -> None:
    """Report bytes outside a frame, ignoring bare CR/LF (some senders add a newline after <FS><CR>)."""
    junk = data[start:stop].strip(b"\r\n")
    if junk:
        if events and isinstance(events[-1], Discarded):
            events[-1] = Discarded(events[-1].count + len(junk))
        else:
            events.append(Discarded(len(junk)))
