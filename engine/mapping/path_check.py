"""Check HL7 v2 route paths against the message structures of the versions a route matches.

The reference is hl7apy's structure definitions (its ``SEGMENTS`` and ``MESSAGES`` tables, which
transcribe the HL7 v2.x standard's segment definitions, HL7 Table 0354 message structures and the
data type component lists). At route load, every HL7 v2 path is checked for:

* a segment that exists (``PXD`` is no segment: "did you mean RXD?") and occurs in a message
  structure of the route's message codes (an ``ADT`` route reading ``RXA``). Z-segments are
  site-defined (HL7 v2.5.1 §2.8.2) and not checked;
* a field number within the segment (``PID-99``: "PID has fields 1-39 in HL7 v2.5.1");
* a repetition filter naming the field's real data type (``PID-3[XX.5=HC]``: PID-3 is CX) and a
  component that type has;
* a component (and subcomponent) within the field's data type (``PID-5.20``: XPN has 14). A field
  that later HL7 versions made composite is read as such: Ningbo senders put ``code^name`` into
  PV1-10 and TXA-2 (IS up to v2.6, CWE from v2.7), so components are also checked against
  `LATEST_VERSION`'s type of the field before they are refused.

A path passes when it is valid in at least one of the versions checked (a route matching v2.3.1 and
v2.5.1 may read PID-39, which only v2.5.1 has); the error names the versions it was checked against.
Fields whose type is ``varies`` (OBX-5, HL7 v2.5.1 §7.4.2.5) have their components left unchecked.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

from engine.hl7v2.path import Path

DEFAULT_VERSIONS = ("2.3.1", "2.4", "2.5", "2.5.1")
"""HL7 v2 versions a route is checked against when its `match.version` names none: the versions
Ningbo hospitals send (docs/mapping.md; ../shared/standards/hl7v2_mapping.md saw 2.3.1, 2.4, 2.5.1)."""
LATEST_VERSION = "2.8.2"
"""The newest hl7apy definitions: consulted for components of fields later versions made composite."""
ALWAYS_PRESENT = frozenset({"MSH"})
"""Segments every message has whatever its structure (HL7 v2.5.1 §2.15)."""

_TYPED_FILTER = re.compile(r"-(\d+)\[([A-Za-z][A-Za-z0-9]*)\.\d")

Spec = tuple[Any, ...]
"""hl7apy's element spec: (kind 'leaf'|'sequence', children, data type, long name, table, length)."""


@cache
def _library(version: str) -> Any:
    from hl7apy import load_library

    return load_library(version)


def supported_versions() -> tuple[str, ...]:
    """Every HL7 v2 version hl7apy has definitions for."""
    from hl7apy import SUPPORTED_LIBRARIES

    return tuple(sorted(SUPPORTED_LIBRARIES, key=lambda v: tuple(int(p) for p in v.split("."))))


@cache
def _structure_segments(version: str, code: str) -> frozenset[str]:
    """Segments in any Table 0354 message structure ``CODE_*`` (or ``CODE``) of ``version``."""
    lib = _library(version)
    out: set[str] = set()

    def walk(children: Iterable[Any]) -> None:
        for child in children:
            if child[-1] == "SEG":
                out.add(child[0])
            elif child[-1] == "GRP":
                walk(child[1][1])

    for name, spec in lib.MESSAGES.items():
        if name == code or name.startswith(code + "_"):
            walk(spec[1])
    return frozenset(out)


def _fields(version: str, segment: str) -> tuple[Any, ...] | None:
    spec = _library(version).SEGMENTS.get(segment)
    return None if spec is None else tuple(spec[1])


def _parts(spec: Spec) -> tuple[str, int | None]:
    """(data type, number of components); None components for a type that varies."""
    kind, children, dtype = spec[0], spec[1], spec[2]
    if dtype == "varies" or dtype is None:
        return str(dtype), None
    return str(dtype), (len(children) if kind == "sequence" else 1)


def _component(spec: Spec, n: int) -> Spec | None:
    if spec[0] != "sequence" or n > len(spec[1]):
        return None
    return tuple(spec[1][n - 1][1])


def _versions_text(versions: Iterable[str]) -> str:
    return "HL7 v" + ", v".join(versions)


def check(path: Path, *, versions: tuple[str, ...], codes: frozenset[str] = frozenset(),
          context: Path | None = None) -> str | None:
    """None when ``path`` is valid in one of ``versions``, else what is wrong and a suggestion.

    ``codes`` are the route's message codes (``ADT``, ``ORU``); ``context`` is the ``each`` /
    ``records`` group a relative path is read in (``OBX[*]``, ``PID-3[*]``).
    """
    segment = path.segment or (context.segment if context is not None else None)
    if segment is None or segment.startswith("Z"):
        return None
    field = path.field
    component, subcomponent = path.component, path.subcomponent
    text = path.text
    if path.segment is None and context is not None and context.field is not None:
        field = context.field  # a component path inside a field-repetition group
        text = f"{context.text} → {path.text}"
    problems: list[str] = []
    for version in versions:
        problem = _check_one(version, segment, field, component, subcomponent, path, codes)
        if problem is None:
            return None
        problems.append(problem)
    if all(p.startswith(_COMPONENT) for p in problems) and _check_one(
            LATEST_VERSION, segment, field, component, subcomponent, path, frozenset()) is None:
        return None  # a later version's composite type (PV1-10 code^name, CWE from v2.7)
    problems = [p.removeprefix(_COMPONENT) for p in problems]
    if all(p == problems[0] for p in problems):
        return f"{text}: {problems[0]} ({_versions_text(versions)})"
    others = ", v".join(versions[:-1])
    return f"{text}: {problems[-1]} (HL7 v{versions[-1]}; not in v{others} either)"


_COMPONENT = "component: "


def _check_one(version: str, segment: str, field: int | None, component: int | None,
               subcomponent: int | None, path: Path, codes: frozenset[str]) -> str | None:
    fields = _fields(version, segment)
    if fields is None:
        known = sorted(_library(version).SEGMENTS)
        close = difflib.get_close_matches(segment, known, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return f"segment {segment} is not defined{hint}"
    if codes and segment not in ALWAYS_PRESENT:
        allowed = frozenset().union(*(_structure_segments(version, c) for c in codes))
        if allowed and segment not in allowed:
            return (f"segment {segment} occurs in no {'/'.join(sorted(codes))} message structure "
                    "(HL7 Table 0354); check match.message_type or the segment ID")
    if field is None:
        return None
    if field > len(fields):
        return f"{segment} has fields 1-{len(fields)}; {segment}-{field} does not exist"
    spec: Spec = tuple(fields[field - 1][1])
    dtype, ncomp = _parts(spec)
    typed = _TYPED_FILTER.search(path.text)
    if typed is not None and int(typed.group(1)) == field and typed.group(2).upper() != dtype:
        fixed = path.text.replace(f"[{typed.group(2)}.", f"[{dtype}.", 1)
        return f"{segment}-{field} is {dtype}, not {typed.group(2)}; write {fixed}"
    if path.rep_filter is not None and ncomp is not None and path.rep_filter.component > ncomp:
        return (f"the filter reads component {path.rep_filter.component} but {segment}-{field} ({dtype}) "
                f"has {ncomp}")
    if component is None or ncomp is None:
        return None
    if component > ncomp:
        return (f"{_COMPONENT}{segment}-{field} is {dtype} with {ncomp} component{'s' if ncomp > 1 else ''}"
                f"; component {component} does not exist")
    if subcomponent is None or subcomponent == 1:
        return None
    sub = _component(spec, component)
    if sub is None:
        return None
    sub_type, nsub = _parts(sub)
    if nsub is not None and subcomponent > nsub:
        return (f"{_COMPONENT}{segment}-{field}.{component} is {sub_type} with {nsub} subcomponent"
                f"{'s' if nsub > 1 else ''}; subcomponent {subcomponent} does not exist")
    return None
