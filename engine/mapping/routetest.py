"""Route tests: YAML files of (input message → expected record / error) cases, run without a server.

A test file (``mappings/tests/*.yaml``; the routes tested are the ``*.yaml`` of the parent directory)::

    route: adt_person                  # default for every case (optional)
    cases:
      - name: an ADT^A01 in UTF-8 maps to a person record
        input_file: tests/samples/adt_a01_v251_utf8.hl7   # a shipped sample, or relative to this file
        expect:
          contains: {name: 王建国, sex_code: "1"}          # subset of the record (or `record:` exact)
      - name: a bad birth date fails with file:line, field, path and value
        input: |                       # inline text; `content_type` is guessed (MSH → HL7, { → FHIR JSON)
          MSH|^~\\&|HIS|NBDYYY|...
        expect:
          error: "birth_date: PID-7 '19851345' is not a valid date"   # substring of the error

Other expectations: ``filtered: <reason substring>``, ``no_match: true`` (the route does not select the
message), ``count: N`` (results of the route, e.g. one per DG1), ``passthrough: true``. Each case is
mapped exactly as the engine maps it (same selection), with message id ``TEST`` received at `RECEIVED_AT`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import load_yaml_with_lines
from engine.errors import ConfigError
from engine.mapping.model import display_name
from engine.mapping.router import Router
from engine.resources import DATA_ROOT
from engine.types import FHIR_JSON, FHIR_XML, HL7V2, MessageState, RouteResult, StoredMessage

RECEIVED_AT = 1710000000.0
"""Fixed receipt time of test messages (2024-03-10 00:00 +08:00), so envelopes are reproducible."""
TEST_MESSAGE_ID = "TEST"
CASE_KEYS = ("name", "route", "input", "input_file", "content_type", "channel", "expect")
EXPECT_KEYS = ("record", "contains", "error", "filtered", "no_match", "count", "passthrough")


@dataclass
class Case:
    """One test case, with where it was written."""

    file: str
    line: int
    name: str
    route: str | None
    payload: bytes
    content_type: str
    channel: str
    expect: Mapping[str, Any]


@dataclass
class CaseResult:
    """Pass or fail, with an explanation (a diff for record mismatches)."""

    case: Case
    passed: bool
    detail: str = ""
    results: list[RouteResult] = field(default_factory=list)


def guess_content_type(payload: bytes, name: str = "") -> str:
    """HL7 v2 for MSH/FHS/BHS text or .hl7 files, FHIR XML for `<`, FHIR JSON otherwise."""
    head = payload.lstrip(b"\xef\xbb\xbf \r\n\t")[:3]
    if name.endswith(".hl7") or head in (b"MSH", b"FHS", b"BHS"):
        return HL7V2
    if head.startswith(b"<") or name.endswith(".xml"):
        return FHIR_XML
    return FHIR_JSON


def load_cases(path: str | Path) -> list[Case]:
    """Read a route test file; ConfigError (file:line) for a malformed one."""
    p = Path(path)
    file = display_name(p)
    doc, lines = load_yaml_with_lines(p.read_text(encoding="utf-8"), file=file)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("cases"), list):
        raise ConfigError("a route test file needs `cases:` (a list)", file=file, line=1)
    default_route = doc.get("route")
    out = []
    for i, c in enumerate(doc["cases"]):
        line = lines.get(("cases", i), 1)
        if not isinstance(c, Mapping):
            raise ConfigError("a case is a mapping", file=file, line=line)
        for k in c:
            if k not in CASE_KEYS:
                raise ConfigError(f"unknown case key {k!r} (allowed: {', '.join(CASE_KEYS)})", file=file,
                                  line=lines.get(("cases", i, k), line))
        expect = c.get("expect")
        if not isinstance(expect, Mapping) or not expect or any(k not in EXPECT_KEYS for k in expect):
            raise ConfigError(f"expect: give one or more of {', '.join(EXPECT_KEYS)}", file=file,
                              line=lines.get(("cases", i, "expect"), line))
        if ("input" in c) == ("input_file" in c):
            raise ConfigError("give exactly one of input / input_file", file=file, line=line)
        if "input" in c:
            payload, name = str(c["input"]).encode("utf-8"), ""
        else:
            name = str(c["input_file"])
            candidates = [DATA_ROOT / name, p.parent / name]  # tests/samples/… ship in DATA_ROOT
            found = next((f for f in candidates if f.is_file()), None)
            if found is None:
                raise ConfigError(f"input_file {name!r} not found", file=file,
                                  line=lines.get(("cases", i, "input_file"), line))
            payload = found.read_bytes()
        ctype = {"hl7v2": HL7V2, "fhir+json": FHIR_JSON, "fhir+xml": FHIR_XML}.get(
            str(c.get("content_type", "")), str(c.get("content_type") or guess_content_type(payload, name)))
        out.append(Case(file=file, line=line, name=str(c.get("name") or f"case {i + 1}"),
                        route=c.get("route", default_route), payload=payload, content_type=ctype,
                        channel=str(c.get("channel", "test")), expect=expect))
    return out


def contains(actual: Any, expected: Any) -> bool:
    """Recursive subset match: dict keys ⊆, lists element-wise by index, scalars equal."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and contains(actual[k], v)
                                                   for k, v in expected.items())
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(actual) >= len(expected)
                and all(contains(a, e) for a, e in zip(actual, expected, strict=False)))
    return bool(actual == expected)


def _dump(value: Any) -> list[str]:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).splitlines()


def diff(expected: Any, actual: Any) -> str:
    """A unified diff of two JSON values (expected → actual)."""
    return "\n".join(difflib.unified_diff(_dump(expected), _dump(actual), "expected", "actual", lineterm=""))


def _prune(actual: Any, expected: Any) -> Any:
    """The part of `actual` a `contains` expectation talks about (keeps diffs short)."""
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return {k: _prune(actual[k], v) if k in actual else "<missing>" for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list):
        return [_prune(a, e) for a, e in zip(actual, expected, strict=False)] + actual[len(expected):]
    return actual


def _describe(r: RouteResult) -> str:
    if r.error:
        return r.error
    if r.filtered is not None:
        return f"filtered ({r.filtered})"
    return "pass-through" if r.passthrough else "record"


def run_case(router: Router, case: Case) -> CaseResult:
    """Map the case's input as the engine would and compare with the expectation."""
    msg = StoredMessage(id=TEST_MESSAGE_ID, channel=case.channel, received_at=RECEIVED_AT,
                        content_type=case.content_type, state=MessageState.RECEIVED, raw=case.payload)
    if case.route is not None and case.route not in {r.id for r in router.routes}:
        return CaseResult(case, False, f"unknown route {case.route!r}")
    all_results = [o for o in router.route_outcomes(msg, observe=False) if o.unrouted is None]
    results = [o.result for o in all_results if case.route is None or o.result.route_id == case.route
               or o.result.route_id.startswith(f"{case.route}#") or o.result.route_id == "(parse)"]
    exp = case.expect
    describe = "; ".join(f"{r.route_id}: " + _describe(r) for r in results) or "no route matched"
    if exp.get("no_match"):
        ok = not results
        return CaseResult(case, ok, "" if ok else f"expected no match, got {describe}", results)
    if not results:
        others = [o.result.route_id for o in all_results]
        return CaseResult(case, False, "no route matched the input"
                          + (f" (routes that did: {others})" if others else ""))
    if "count" in exp and len(results) != exp["count"]:
        return CaseResult(case, False, f"expected {exp['count']} result(s), got {len(results)}: {describe}",
                          results)
    first = results[0]
    if "error" in exp:
        want = str(exp["error"])
        errors = [r.error for r in results if r.error]
        ok = any(want in e for e in errors)
        return CaseResult(case, ok, "" if ok else f"expected an error containing {want!r}, got {describe}",
                          results)
    if "filtered" in exp:
        ok = first.filtered is not None and str(exp["filtered"]) in first.filtered
        return CaseResult(case, ok, "" if ok else f"expected filtered ({exp['filtered']}), got {describe}",
                          results)
    if exp.get("passthrough"):
        ok = first.passthrough
        return CaseResult(case, ok, "" if ok else f"expected a pass-through result, got {describe}", results)
    if "record" not in exp and "contains" not in exp:
        return CaseResult(case, True, "", results)  # `count` alone
    if first.record is None:
        return CaseResult(case, False, f"expected a record, got {describe}", results)
    if "record" in exp and first.record != exp["record"]:
        return CaseResult(case, False, "record differs:\n" + diff(exp["record"], first.record), results)
    if "contains" in exp and not contains(first.record, exp["contains"]):
        return CaseResult(case, False, "record does not contain the expected values:\n"
                          + diff(exp["contains"], _prune(first.record, exp["contains"])), results)
    return CaseResult(case, True, "", results)


def find_test_files(paths: Iterable[str | Path]) -> list[Path]:
    """Test files under the given files/directories (default: mappings/tests)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    return out


def routes_for(test_file: Path) -> list[Path]:
    """The route files a test file tests: the `*.yaml` next to its directory (mappings/tests → mappings)."""
    return sorted(test_file.resolve().parent.parent.glob("*.yaml"))
