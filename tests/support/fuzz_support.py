"""Strategies and seeds shared by the property tests in tests/fuzz/ (profiles: tests/fuzz/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
FUZZ_FACTOR = int(os.environ.get("YONGLINK_FUZZ_FACTOR", "50"))
"""How many times more cases each test runs under `make fuzz` (a few minutes per test on 2 cores)."""


def examples(n: int) -> int:
    """`n` cases in `make test`, n x FUZZ_FACTOR under `make fuzz`."""
    return n * FUZZ_FACTOR if os.environ.get("YONGLINK_FUZZ") else n


def seeds(folder: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((CORPUS / folder).iterdir()) if p.is_file()]


SEPARATORS = b"|^~\\&#\r\n\x0b\x1c"
"""Bytes that matter to HL7 v2 and MLLP: more likely in mutations than a uniform byte would be."""


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A seed with a few deletions, insertions (separators, escapes, high bytes, random) and cuts."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(("delete", "insert", "separator", "cut", "repeat")))
        at = draw(st.integers(0, len(data)))
        if op == "delete" and data:
            del data[min(at, len(data) - 1):min(at, len(data) - 1) + draw(st.integers(1, 8))]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "separator":
            data[at:at] = bytes([draw(st.sampled_from(SEPARATORS))])
        elif op == "cut":
            del data[at:]
        elif op == "repeat" and data:
            start = min(at, len(data) - 1)
            data[start:start] = data[start:start + 16] * draw(st.integers(2, 50))
    return bytes(data)


def hl7_bytes() -> st.SearchStrategy[bytes]:
    """Mutated sample messages, and now and then raw bytes: what a hostile or broken sender posts."""
    samples = st.sampled_from(seeds("er7"))
    return st.one_of(mutated(samples), mutated(samples), mutated(samples), st.binary(max_size=300))
