"""MLLP framing, tested by feeding bytes to the decoder the way reads arrive from a socket."""

from __future__ import annotations

from channels.mllp.framing import Discarded, FrameDecoder, Oversize, encode_frame

MSG1 = b"MSH|^~\\&|HIS|NBH|||20240101||ADT^A01|1|P|2.5.1\rPID|1\r"
MSG2 = b"MSH|^~\\&|HIS|NBH|||20240101||ADT^A01|2|P|2.5.1\rPID|2\r"


def feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[object]:
    events: list[object] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events


def test_a_frame_in_one_read_gives_its_payload() -> None:
    assert FrameDecoder().feed(encode_frame(MSG1)) == [MSG1]


def test_a_frame_split_at_every_possible_byte_is_reassembled() -> None:
    data = encode_frame(MSG1)
    for cut in range(1, len(data)):
        decoder = FrameDecoder()
        assert feed_all(decoder, [data[:cut], data[cut:]]) == [MSG1], cut
        assert not decoder.in_frame


def test_a_frame_fed_one_byte_at_a_time_is_reassembled() -> None:
    data = encode_frame(MSG1) + encode_frame(MSG2)
    assert feed_all(FrameDecoder(), [data[i:i + 1] for i in range(len(data))]) == [MSG1, MSG2]


def test_several_pipelined_frames_in_one_read_come_out_in_order() -> None:
    data = b"".join(encode_frame(m) for m in (MSG1, MSG2, MSG1))
    assert FrameDecoder().feed(data) == [MSG1, MSG2, MSG1]


def test_bytes_between_frames_are_discarded_and_counted_without_their_content() -> None:
    events = FrameDecoder().feed(b"junk" + encode_frame(MSG1) + b"more junk" + encode_frame(MSG2))
    assert events == [Discarded(4), MSG1, Discarded(9), MSG2]


def test_a_newline_after_the_end_block_is_not_reported_as_garbage() -> None:
    assert FrameDecoder().feed(encode_frame(MSG1) + b"\r\n" + encode_frame(MSG2)) == [MSG1, MSG2]


def test_a_file_separator_not_followed_by_carriage_return_is_payload() -> None:
    payload = b"MSH|x\x1cy\r"
    assert FrameDecoder().feed(encode_frame(payload)) == [payload]


def test_a_frame_over_the_limit_is_reported_once_and_the_next_frame_still_decodes() -> None:
    decoder = FrameDecoder(max_frame_bytes=64)
    big = b"MSH|^~\\&|HIS|NBH\r" + b"X" * 200
    events = feed_all(decoder, [encode_frame(big)[:100], encode_frame(big)[100:], encode_frame(MSG1)])
    assert len(events) == 2
    oversize = events[0]
    assert isinstance(oversize, Oversize) and oversize.limit == 64
    assert oversize.head.startswith(b"MSH|^~\\&|HIS|NBH\r")
    assert events[1] == MSG1


def test_a_frame_exactly_at_the_limit_is_accepted() -> None:
    payload = b"M" * 64
    assert FrameDecoder(max_frame_bytes=64).feed(encode_frame(payload)) == [payload]
    assert FrameDecoder(max_frame_bytes=64).feed(encode_frame(payload)[:30]) == []


def test_a_missing_end_block_leaves_the_frame_open_with_its_bytes_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0b" + MSG1) == []
    assert decoder.in_frame and decoder.buffered == len(MSG1)


def test_an_end_block_split_between_reads_closes_the_frame() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x0b" + MSG1 + b"\x1c") == []
    assert decoder.feed(b"\r") == [MSG1]
    assert not decoder.in_frame


def test_an_empty_frame_gives_an_empty_payload() -> None:
    assert FrameDecoder().feed(b"\x0b\x1c\r") == [b""]


# --- lenient mode (framing: lenient) ----------------------------------------------------------------


def test_lenient_mode_ends_a_frame_at_fs_alone_and_takes_a_cr_after_it_with_it() -> None:
    dec = FrameDecoder(lenient=True)
    assert dec.feed(b"\x0bMSH|a\x1c") == [b"MSH|a"]
    assert dec.feed(b"\r\x0bMSH|b\x1c\r") == [b"MSH|b"]
    assert not dec.in_frame


def test_lenient_mode_makes_vt_optional_and_skips_newlines_between_frames() -> None:
    dec = FrameDecoder(lenient=True)
    assert dec.feed(b"\r\nMSH|a\rPID|1\r\x1c\nMSH|b\x1c") == [b"MSH|a\rPID|1\r", b"MSH|b"]


def test_lenient_mode_still_cuts_an_oversize_frame_and_resumes_after_its_fs() -> None:
    dec = FrameDecoder(max_frame_bytes=8, lenient=True)
    events = dec.feed(b"\x0b" + b"x" * 20)
    assert len(events) == 1 and isinstance(events[0], Oversize) and events[0].size == 20
    assert dec.feed(b"yyy\x1c\rMSH|ok\x1c") == [b"MSH|ok"]


def test_strict_mode_reports_the_size_received_when_an_oversize_frame_is_cut() -> None:
    dec = FrameDecoder(max_frame_bytes=8)
    (event,) = dec.feed(b"\x0b" + b"x" * 30)
    assert isinstance(event, Oversize) and event.size == 30 and event.head == b"x" * 30
