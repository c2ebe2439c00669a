"""Property tests of the ER7 reader and ACK building (engine/hl7v2/er7.py, engine/hl7v2/ack.py,
engine/hl7v2/ack.py, header.py): mutated samples and raw bytes, decoded as a receiver would.

Invariants: reading refuses with `RejectedMessage` (an AR with a reason) or reads, never anything else;
every header accessor and path read of a message that parsed works; an ACK can be built for anything
that parsed (and for nothing, `msg=None`) with any code and any text, and reads back with that code.
"""

from __future__ import annotations

from fuzz_support import examples, hl7_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.payload import Envelope, hl7v2_items
from engine.errors import RejectedMessage
from engine.hl7v2.ack import ACK_CODES, AckWriter, build_ack, parse_ack
from engine.hl7v2.charset import decode, python_codec, sniff_charset
from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.header import read_header

PATHS = ("MSH-9.2", "MSH-10", "MSH-18", "PID-3[*].1", "PID-3[CX.5=ID].1", "PID-5.1", "OBX[*]-5", "NTE-3",
         "PID-3[2].4.2", "EVN-2")
TEXTS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=120)
"""ACK texts as the engine writes them: its own reasons are printable (they quote input with repr), and
`AckWriter.negative` makes any other text printable first (see `RAW_TEXTS`)."""
RAW_TEXTS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)


def read(raw: bytes) -> tuple[str, Er7Message | None]:
    """Decode and parse as the MLLP handler does; (text, message) or (text, None) when refused."""
    label = sniff_charset(raw)
    text = decode(raw, label)
    try:
        return text, Er7Message.parse(text)
    except RejectedMessage:
        return text, None


@settings(max_examples=examples(1500))
@given(raw=hl7_bytes())
def test_reading_either_refuses_with_a_reason_or_gives_a_message_whose_reads_all_work(raw: bytes) -> None:
    try:
        _, msg = read(raw)
    except RejectedMessage as exc:  # charset refused: the AR names why
        assert exc.reason
        return
    if msg is None:
        return
    for name in ("sending_application", "sending_facility", "control_id", "message_type", "version",
                 "accept_ack_type", "processing_id", "charset"):
        assert isinstance(getattr(msg, name), str)
    for path in PATHS:
        try:
            msg.get(path)
            msg.get_all(path)
        except RejectedMessage:
            pass
    msg.header  # noqa: B018 - the property reads every MSH field


@settings(max_examples=examples(1500))
@given(raw=hl7_bytes())
def test_http_and_amqp_intake_answers_every_payload_with_an_ack_a_parser_can_read(raw: bytes) -> None:
    """channels/payload.py as HTTP and AMQP use it: AR with the reason for bad input, else AA."""
    items = hl7v2_items(raw, Envelope(channel="web", received_at=0.0))
    first = items[0]
    code = "AR" if first.error is not None else "AA"
    reason = first.error.reason if first.error is not None else ""
    ack = build_ack(first.header, code, reason, control_id="FUZZ-1",
                    error_code=first.error.code if first.error is not None else None)
    assert parse_ack(ack)[0] == code
    ack.encode(first.codec, errors="replace")
    if first.error is not None:  # kept: the whole payload is the rejected item's raw bytes
        assert len(items) == 1 and first.inbound.raw == raw


@settings(max_examples=examples(1500))
@given(raw=hl7_bytes(), code=st.sampled_from(sorted(ACK_CODES)), text=TEXTS,
       control_id=st.text(alphabet="ABC0123456789-", min_size=1, max_size=20))
def test_an_ack_can_be_built_for_whatever_parsed_and_reads_back_with_its_code(
        raw: bytes, code: str, text: str, control_id: str) -> None:
    try:
        _, msg = read(raw)
    except RejectedMessage:
        msg = None
    ack = build_ack(msg, code, text, control_id=control_id, error_code="207")
    got_code, _, _ = parse_ack(ack)
    assert got_code == code
    codec = msg.codec if msg is not None else "utf-8"
    ack.encode(python_codec(codec) if msg is not None and codec else "utf-8", errors="replace")


@settings(max_examples=examples(1500))
@given(raw=hl7_bytes(), text=TEXTS, raw_text=RAW_TEXTS)
def test_the_mllp_ack_writer_answers_any_header_it_can_read_and_refuses_the_rest_with_a_reason(
        raw: bytes, text: str, raw_text: str) -> None:
    writer = AckWriter("FUZZ-")
    try:
        decoded, msg = read(raw)
        hdr = read_header(decoded, raw, "utf-8", single=True)
    except RejectedMessage as exc:
        assert exc.reason
        nak = writer.negative(None, "AR", exc.reason, error_code=exc.code)
        assert parse_ack(nak)[0] == "AR"
        return
    assert parse_ack(writer.positive(hdr, "AA", text))[0] == "AA"
    assert parse_ack(writer.negative(hdr, "AE", raw_text or "error", error_code="207"))[0] == "AE"
    del msg
