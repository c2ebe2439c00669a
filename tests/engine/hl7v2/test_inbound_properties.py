"""Property tests of the shared inbound rules: whatever the bytes, an answer, never an exception.

Invariants (issue #16): `read_payload` never raises; a rejected payload has a reason and an AR that
builds and encodes in the chosen codec; an accepted one gets an AA that does, and a dedupe key only from
a plausible control id. Bounded to a few hundred cases each so they run in `make test`.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.hl7v2.ack import AckWriter, build_ack
from engine.hl7v2.header import plausible_control_id
from engine.hl7v2.inbound import inbound_message, read_payload

BASE = ("MSH|^~\\&|HIS|{fac}|EMPI|NB|20240101120000||ADT^A01|{cid}|P|2.5.1|||{ack}||CHN|{cs}\r"
        "PID|1||42^^^NBH^MR||{name}\r")
CHARSETS = ["", "UNICODE UTF-8", "GB 18030-2000", "8859/1", "base64", "idna", "punycode", "undefined",
            "NO-SUCH", "utf-8\x00", "UNICODE UTF-16", "BIG-5", "GBK"]
CODECS = ["utf-8", "gb18030", "latin-1", "big5", "utf-16"]
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def check(raw: bytes) -> None:
    read = read_payload(raw)
    writer = AckWriter("P-")
    if read.error is not None:
        assert read.error.reason
        ack = writer.negative(read.header, "AR", read.error.reason, error_code=read.error.code)
        ack.encode(read.charset.codec, errors="replace")
        return
    for hdr, data in read.messages:
        msg = inbound_message(hdr, data, read.charset, channel="c", received_at=0.0, peer=None)
        if msg.dedupe_key is not None:
            assert plausible_control_id(hdr.control_id)
        writer.positive(hdr, "AA").encode(read.charset.codec, errors="replace")
        build_ack(hdr, "AE", "x", control_id="1", errors=["a", "b"]).encode(read.charset.codec, "replace")


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_get_an_answer(raw: bytes) -> None:
    check(raw)


@PROPERTY
@given(fac=st.text(max_size=12), cid=st.text(max_size=24), ack=st.sampled_from(["", "AL", "NE", "ER"]),
       cs=st.sampled_from(CHARSETS), name=st.text(max_size=20), codec=st.sampled_from(CODECS),
       cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=4))
def test_damaged_headers_in_any_charset_get_an_answer(fac: str, cid: str, ack: str, cs: str, name: str,
                                                      codec: str, cut: int, junk: bytes) -> None:
    raw = BASE.format(fac=fac, cid=cid, ack=ack, cs=cs, name=name).encode(codec, errors="replace")
    check(raw[:cut] + junk + raw[cut:])
