"""Property tests of the MLLP framer (channels/mllp/framing.py): any bytes, any read boundaries.

Invariants: `feed` never raises; how a stream is cut into reads never changes what comes out; what is
held for an open frame never exceeds `max_frame_bytes` (+1 byte of a possible half end block); frames
written by `encode_frame` come out exactly, whatever junk surrounds them.
"""

from __future__ import annotations

from fuzz_support import SEPARATORS, examples, mutated, seeds
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.mllp.framing import Discarded, FrameDecoder, Oversize, encode_frame

STREAMS = st.one_of(mutated(st.sampled_from(seeds("mllp"))), st.binary(max_size=400),
                    st.lists(st.sampled_from(SEPARATORS + b"MSH|x"), max_size=200).map(bytes))


def feed_in_reads(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[object]:
    events: list[object] = []
    at = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        events.extend(decoder.feed(data[at:cut]))
        assert decoder.buffered <= decoder.max_frame_bytes + 1
        at = cut
    return events


def frames(events: list[object]) -> list[object]:
    """Frames and oversize notices; `Discarded` counts are merged differently across reads."""
    return [e.size if isinstance(e, Oversize) else e for e in events if not isinstance(e, Discarded)]


@settings(max_examples=examples(1000))
@given(data=STREAMS, cuts=st.lists(st.integers(0, 10_000), max_size=12), limit=st.integers(1, 64),
       lenient=st.booleans())
def test_read_boundaries_never_change_the_frames_and_memory_stays_bounded(
        data: bytes, cuts: list[int], limit: int, lenient: bool) -> None:
    whole = FrameDecoder(max_frame_bytes=limit, lenient=lenient).feed(data)
    split = feed_in_reads(FrameDecoder(max_frame_bytes=limit, lenient=lenient), data, cuts)
    # Oversize `size` is "bytes received when cut", which depends on read sizes: compare frames only.
    assert [f for f in frames(split) if isinstance(f, bytes)] == \
           [f for f in frames(whole) if isinstance(f, bytes)]
    assert sum(isinstance(e, Oversize) for e in split) == sum(isinstance(e, Oversize) for e in whole)


@settings(max_examples=examples(1000))
@given(payloads=st.lists(st.binary(max_size=200).map(lambda p: p.replace(b"\x1c", b"")), max_size=6),
       junk=st.lists(st.binary(max_size=20).map(lambda j: j.replace(b"\x0b", b"")), min_size=7, max_size=7),
       cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_come_out_exactly_whatever_junk_surrounds_them(
        payloads: list[bytes], junk: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(junk[i] + encode_frame(p) for i, p in enumerate(payloads)) + junk[len(payloads)]
    events = feed_in_reads(FrameDecoder(max_frame_bytes=256), stream, cuts)
    assert [e for e in events if isinstance(e, bytes)] == payloads
