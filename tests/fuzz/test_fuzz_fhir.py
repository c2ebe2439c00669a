"""Property tests of the FHIR intake (channels/payload.py `fhir_messages`, as HTTP and AMQP use it).

Invariant: any body, JSON or XML, well-formed or not, is either messages to commit (each keeping bytes
of the body) or a `FhirParseError` with a reason and element-path issues (a 400 OperationOutcome, the
body stored `rejected`), never any other exception.
"""

from __future__ import annotations

import orjson
from fuzz_support import examples, mutated, seeds
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.payload import Envelope, fhir_messages
from engine.errors import FhirParseError

JSON_SEEDS = [s for s in seeds("fhir") if s.lstrip().startswith(b"{")]
XML_SEEDS = [s for s in seeds("fhir") if s.lstrip().startswith(b"<")]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceType", "id", "entry", "resource", "type", "name", "birthDate",
                         "identifier", "value", "system", "meta", "extension", "url", "gender"])
        | st.text(max_size=8), inner, max_size=5),
    max_leaves=20)


@st.composite
def seed_with_changes(draw: st.DrawFn) -> bytes:
    """A sample resource with some keys replaced by generated values (structure-aware mutation)."""
    doc = orjson.loads(draw(st.sampled_from(JSON_SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        target = doc
        while isinstance(target, dict) and target and draw(st.booleans()):
            child = target[draw(st.sampled_from(sorted(target)))]
            if not isinstance(child, dict):
                break
            target = child
        if isinstance(target, dict):
            key = draw(st.sampled_from(sorted(target) or ["id"]))
            target[key] = draw(JSON_VALUES)
    return orjson.dumps(doc)


BODIES = st.one_of(seed_with_changes(), mutated(st.sampled_from(JSON_SEEDS)),
                   JSON_VALUES.map(orjson.dumps), st.binary(max_size=200))


def intake(raw: bytes, content_type: str, expected: str | None) -> None:
    env = Envelope(channel="web", received_at=0.0)
    try:
        msgs = fhir_messages(raw, env, content_type=content_type, release="R4B", expected_type=expected)
    except FhirParseError as exc:
        assert exc.reason
        return
    assert msgs and all(m.raw for m in msgs)


@settings(max_examples=examples(1000))
@given(raw=BODIES, expected=st.sampled_from([None, "Patient", "Bundle"]))
def test_any_json_body_is_messages_or_a_fhir_parse_error(raw: bytes, expected: str | None) -> None:
    intake(raw, "application/fhir+json", expected)


@settings(max_examples=examples(300))
@given(raw=st.one_of(mutated(st.sampled_from(XML_SEEDS)), st.binary(max_size=200)))
def test_any_xml_body_is_messages_or_a_fhir_parse_error(raw: bytes) -> None:
    intake(raw, "application/fhir+xml", None)
