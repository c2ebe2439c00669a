"""Compile a route's source paths once, into getters the mapper calls per message.

HL7 v2 paths are checked with `engine.hl7v2.path.compile_path` (absolute ``PID-5.1``; inside an
``each:`` group relative ``5`` / ``3.1`` for segment groups, ``1`` / ``4.2`` for field-repetition
groups), FHIRPath with `engine.fhir.path.compile_fhirpath`. A bad path raises `PathSyntaxError` at
load time, never per message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from engine.errors import ConfigError, PathSyntaxError
from engine.message_view import HEADER_KEYS, Source

HEADER = "header."
"""Prefix of a path that reads a `Source.header` key (``header.sending_facility``)."""

Kind = Literal["hl7v2", "fhir", "any"]
"""The path language of a route: decided by its `match` (message_type → hl7v2, resource_type → fhir)."""
Scope = Literal["message", "segment", "repetition"]
"""Where a path is read: the whole message, one segment of an `each` group, or one field repetition."""

Getter = Callable[[Source], "str | None"]
AllGetter = Callable[[Source], list[str]]


def check_path(kind: Kind, text: str, scope: Scope = "message") -> None:
    """Raise PathSyntaxError (or ConfigError for `any` routes) when `text` is not a valid path."""
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError("a path must be a non-empty string", path=str(text))
    if text.startswith(HEADER):
        if text[len(HEADER):] not in HEADER_KEYS:
            raise ConfigError(f"{text!r}: unknown header key (known: {', '.join(HEADER_KEYS)})")
        return
    if kind == "hl7v2":
        from engine.hl7v2.path import compile_path

        if text[:1].isalpha() or scope == "message":
            compile_path(text)
        else:
            compile_path(text, "component" if scope == "repetition" else "field")
    elif kind == "fhir":
        from engine.fhir.path import compile_fhirpath

        compile_fhirpath(text)
    else:
        raise ConfigError("this route matches neither message_type (HL7 v2) nor resource_type (FHIR), "
                          "so it cannot read paths")


def getter(kind: Kind, text: str, scope: Scope = "message") -> Getter:
    """A function reading the first value at `text` (checked now)."""
    check_path(kind, text, scope)
    if text.startswith(HEADER):
        key = text[len(HEADER):]
        return lambda s: s.header.get(key) or None
    if kind == "hl7v2":
        return _hl7_getter(text, scope)
    return lambda s: s.get(text)


def _hl7_getter(text: str, scope: Scope) -> Getter:
    """An HL7 v2 path compiled into a reader (`engine.hl7v2.access`): the same value `get` would
    return, without interpreting the path per message."""
    from engine.hl7v2 import access
    from engine.hl7v2.path import compile_path

    if text[:1].isalpha():  # absolute: read on the whole message, from any scope
        read_message = access.message_reader(compile_path(text))
        if scope == "message":
            return read_message  # type: ignore[return-value]
        message_of = access.message_of
        return lambda s: read_message(message_of(s))
    if scope == "segment":
        return access.segment_reader(compile_path(text, "field"))  # type: ignore[return-value]
    return access.repetition_reader(compile_path(text, "component"))  # type: ignore[return-value]


NullGetter = Callable[[Source], bool]


def hl7_null_getter(text: str) -> NullGetter | None:
    """For an absolute HL7 v2 path (``PID-11.3``): whether the message sends the explicit null ``""``
    there or for the whole field (HL7 v2.5.1 §2.5.3: ``""`` means "delete the value"). None for paths
    with a repetition filter or index, which name no single place a sender could clear."""
    from engine.hl7v2.access import message_of
    from engine.hl7v2.path import FIRST, compile_path
    from engine.hl7v2.segment import HL7_NULL, Segment

    if not text[:1].isalpha() or text.startswith(HEADER):
        return None
    p = compile_path(text)
    if p.field is None or p.rep != FIRST or p.rep_filter is not None or p.seg_index != FIRST:
        return None
    name, field, comp, sub = p.segment or "", p.field, p.component, p.subcomponent

    def is_null(source: Source) -> bool:
        segs = message_of(source).children(name)
        if not segs or not isinstance(segs[0], Segment):
            return False
        seg = segs[0]
        return HL7_NULL in (seg.raw_value(field), seg.raw_value(field, 1, comp, sub))
    return is_null


def all_getter(kind: Kind, text: str, scope: Scope = "message") -> AllGetter:
    """A function reading every value at `text` (checked now)."""
    check_path(kind, text, scope)
    return lambda s: s.get_all(text)


def group_scope(kind: Kind, group: str) -> Scope:
    """The scope of paths inside an `each` group: HL7 ``PID-3[*]`` → repetition, ``OBX[*]`` → segment."""
    if kind != "hl7v2":
        return "message"
    from engine.hl7v2.path import compile_path

    return "repetition" if compile_path(group).field is not None else "segment"
