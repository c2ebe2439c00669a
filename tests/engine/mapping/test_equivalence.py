"""Mapping output is frozen: every sample, and thousands of mutated HL7 samples, map exactly as before.

The expected outputs in ``equivalence_expected.json`` were produced by the mapping runtime *before*
it was restructured for speed (commit ba7df43, interpreted readers), so this is the guard that a
faster runtime changes no record, error text, filter reason, organisation, invalid-field list or
data-quality count. Unmutated samples are stored in full (readable diffs); mutated variants (each
field of each segment replaced by a value that probes absence, HL7 null, repetition/component
structure, a bad date, escapes and short codes) are stored as one digest per (sample, segment).

After an intended change of mapping output, refreeze with
``.venv/bin/python tests/engine/mapping/test_equivalence.py --freeze`` and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "tests" / "samples"
EXPECTED = Path(__file__).with_name("equivalence_expected.json")

MUTATIONS = ("", '""', "A~B^C&D", "20240230", "\\F\\x\\E\\y", "T", "I")
"""Values a whole field is replaced with (each field 1..MAX_FIELD of each segment)."""
MAX_FIELD = 25
MAX_SAME_SEGMENTS = 2
"""Only the first two segments of a name are mutated (the 20 OBX of the lab sample are alike)."""
RECEIVED_AT = 1710000000.0


def _router() -> Any:
    from engine.mapping import build_router

    return build_router(sorted((REPO / "mappings").glob("*.yaml")))


def _stored(raw: bytes, content_type: str) -> Any:
    from engine.types import MessageState, StoredMessage

    return StoredMessage(id="EQ1", channel="eq", received_at=RECEIVED_AT, content_type=content_type,
                         state=MessageState.RECEIVED, raw=raw)


def _outputs(router: Any, raw: bytes, content_type: str) -> list[list[Any]]:
    out = []
    for o in router.route_outcomes(_stored(raw, content_type)):
        r = o.result
        out.append([r.route_id, r.dataset, r.record, r.error, r.filtered, r.passthrough,
                    list(r.destinations), o.org, o.dataset, list(o.invalid)])
    return out


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _hl7_samples() -> list[Path]:
    return sorted(SAMPLES.glob("*.hl7"))


def _fhir_samples() -> list[Path]:
    return sorted((SAMPLES / "fhir").glob("*.json")) + sorted((SAMPLES / "fhir").glob("*.xml"))


def _mutants(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """(segment key, mutated bytes) for each mutated field, grouped by segment line."""
    from engine.hl7v2.charset import decode, python_codec, sniff_charset

    charset = sniff_charset(raw)
    codec = python_codec(charset) if charset else "utf-8"
    text = decode(raw, charset)
    sep = "\r\n" if "\r\n" in text else ("\r" if "\r" in text else "\n")
    lines = text.split(sep)
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        name = line[:3]
        if len(line) < 4 or line[3] != "|":
            continue
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > MAX_SAME_SEGMENTS:
            continue
        fields = line.split("|")
        first = 2 if name == "MSH" else 1  # MSH: fields[1] is MSH-2, the encoding characters
        for f in range(first, min(len(fields), MAX_FIELD + 1)):
            for value in MUTATIONS:
                new = [*fields[:f], value, *fields[f + 1:]]
                mutated = [*lines[:i], "|".join(new), *lines[i + 1:]]
                yield f"{i}:{name}", sep.join(mutated).encode(codec, errors="replace")


def current() -> dict[str, Any]:
    """What the mapping runtime produces now, in the fixture's shape."""
    from engine.mapping.code_tables import CodeTable
    from engine.types import FHIR_JSON, FHIR_XML, HL7V2

    router = _router()
    before = dict(CodeTable.unmapped_counts)
    samples: dict[str, Any] = {}
    for path in _hl7_samples():
        samples[path.name] = _outputs(router, path.read_bytes(), HL7V2)
    for path in _fhir_samples():
        ctype = FHIR_XML if path.suffix == ".xml" else FHIR_JSON
        samples[f"fhir/{path.name}"] = _outputs(router, path.read_bytes(), ctype)
    mutants: dict[str, list[Any]] = {}
    for path in _hl7_samples():
        for key, raw in _mutants(path.read_bytes()):
            mutants.setdefault(f"{path.name}@{key}", []).append(_outputs(router, raw, HL7V2))
    quality = router.quality_snapshot()
    quality.pop("since")
    unmapped = {k: v - before.get(k, 0) for k, v in CodeTable.unmapped_counts.items()
                if v != before.get(k, 0)}
    return {"samples": samples, "mutants": {k: _digest(v) for k, v in mutants.items()},
            "quality": _digest(quality), "unmapped_counts": dict(sorted(unmapped.items()))}


def test_every_sample_and_mutant_maps_exactly_as_the_frozen_runtime_did() -> None:
    """Records, errors, filter reasons, orgs and quality counts equal the frozen outputs."""
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(current(), ensure_ascii=False, default=repr))
    for name, outputs in expected["samples"].items():
        assert got["samples"].get(name) == outputs, f"sample {name} maps differently"
    assert set(got["samples"]) == set(expected["samples"])
    differ = [k for k, v in expected["mutants"].items() if got["mutants"].get(k) != v]
    assert not differ, f"{len(differ)} mutated segment groups map differently, e.g. {differ[:5]}"
    assert set(got["mutants"]) == set(expected["mutants"])
    assert got["quality"] == expected["quality"], "data-quality counts differ"
    assert got["unmapped_counts"] == expected["unmapped_counts"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--freeze"]:
        sys.exit("usage: test_equivalence.py --freeze   (rewrites the expected outputs)")
    sys.path.insert(0, str(REPO))
    EXPECTED.write_text(json.dumps(current(), ensure_ascii=False, indent=1, sort_keys=True,
                                   default=repr) + "\n", encoding="utf-8")
    print(f"wrote {EXPECTED}")
