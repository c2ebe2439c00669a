"""Compiled readers: an HL7 v2 path turned once into a function that reads it (the mapping hot path).

`Er7Message.get` / `Segment.get` interpret a `Path` on every call (which parts are set, generators over
segments and repetitions, a helper per level). A route reads the same few dozen paths from every
message, so `engine.mapping.paths` compiles each one here at route load into a closure specialised
for the path's shape: only the splits that path needs, with its numbers bound as constants.

A reader returns exactly what `get` returns for the same path (the rule in `engine.hl7v2.er7`: the
first non-empty value that is not the HL7 null ``""``, escapes decoded, else ``None``); the
equivalence tests (tests/engine/hl7v2/test_access.py) hold them to that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.hl7v2.encoding import unescape
from engine.hl7v2.path import ALL, FIRST, Path
from engine.hl7v2.segment import HL7_NULL, Repetition, Segment, pick

if TYPE_CHECKING:
    from engine.hl7v2.er7 import Er7Message

SegmentReader = Callable[[Segment], "str | None"]
"""Reads a field path (``5``, ``3[CX.5=ID].1``) on one segment."""
MessageReader = Callable[["Er7Message"], "str | None"]
"""Reads an absolute path (``PID-5.1``) on a message."""
RepetitionReader = Callable[[Repetition], "str | None"]
"""Reads a component path (``1``, ``4.2``) on one field repetition."""


def _decoded(raw: str, seg: Segment) -> str | None:
    """The `get` rule for one raw value: absent / empty / HL7 null → None, escapes decoded."""
    if not raw or raw == HL7_NULL:
        return None
    enc = seg.enc
    return unescape(raw, enc, seg.msg.codec) if enc.escape in raw else raw


def segment_reader(p: Path) -> SegmentReader:
    """A reader for the field part of `p` (its segment part, if any, is ignored here)."""
    if p.field is None:
        return lambda seg: _decoded(seg.raw, seg)
    if p.rep_filter is not None or p.rep == ALL:
        return _searching_reader(p)
    return _indexed_reader(p)


def _indexed_reader(p: Path) -> SegmentReader:
    """One repetition (the first, or ``[n]``): split only down to the component wanted."""
    field = p.field or 0
    rep = 1 if p.rep == FIRST else p.rep
    comp, sub = p.component, p.subcomponent
    separators_field = field <= 2  # MSH-1 / MSH-2 are the separators: never split (see Segment.reps)

    def read(seg: Segment) -> str | None:
        fields = seg.fields
        if field >= len(fields):
            return None
        text = fields[field]
        if not text:
            return None
        enc = seg.enc
        if separators_field and seg.name == "MSH":
            return _decoded(text, seg) if rep == 1 else None
        if rep == 1:
            raw = text.partition(enc.repetition)[0]
        else:
            reps = text.split(enc.repetition, rep)
            if rep > len(reps):
                return None
            raw = reps[rep - 1]
        if comp is not None:
            parts = raw.split(enc.component, comp)
            if comp > len(parts):
                return None
            raw = parts[comp - 1]
            if sub is not None:
                if not enc.subcomponent:
                    if sub != 1:
                        return None
                else:
                    subs = raw.split(enc.subcomponent, sub)
                    if sub > len(subs):
                        return None
                    raw = subs[sub - 1]
        if not raw or raw == HL7_NULL:
            return None
        return unescape(raw, enc, seg.msg.codec) if enc.escape in raw else raw
    return read


def _searching_reader(p: Path) -> SegmentReader:
    """Every repetition (``[*]``) or those a filter selects (``[CX.5=ID]``): the first that has a value."""
    field = p.field or 0
    comp, sub = p.component, p.subcomponent
    f = p.rep_filter
    fcomp, fsub, fvalue = (f.component, f.subcomponent, f.value) if f is not None else (0, None, "")

    def read(seg: Segment) -> str | None:
        reps = seg.reps(field)
        if not reps:
            return None
        enc = seg.enc
        esc = enc.escape
        separators = field <= 2 and seg.name == "MSH"
        for r in reps:
            if f is not None:
                key = pick(r, enc, fcomp, fsub)
                if esc in key:
                    key = unescape(key, enc, seg.msg.codec)
                if key != fvalue:
                    continue
            raw = r if separators else pick(r, enc, comp, sub)
            if raw and raw != HL7_NULL:
                return unescape(raw, enc, seg.msg.codec) if esc in raw else raw
        return None
    return read


def message_reader(p: Path) -> MessageReader:
    """A reader for an absolute path: pick the segment(s) by name and index, then read the field."""
    name = p.segment or ""
    index = p.seg_index
    on_segment = segment_reader(p)

    if index == ALL:
        def read_any(msg: Er7Message) -> str | None:
            for i in msg._by_name.get(name, ()):
                value = on_segment(msg._seg(i))
                if value is not None:
                    return value
            return None
        return read_any

    n = 1 if index == FIRST else index

    def read(msg: Er7Message) -> str | None:
        idxs = msg._by_name.get(name)
        if idxs is None or n > len(idxs):
            return None
        i = idxs[n - 1]
        seg = msg._segs[i]
        if seg is None:
            seg = msg._seg(i)
        return on_segment(seg)
    return read


def repetition_reader(p: Path) -> RepetitionReader:
    """A reader for a component path inside one field repetition."""
    comp, sub = p.component, p.subcomponent

    def read(rep: Repetition) -> str | None:
        seg = rep.segment
        return _decoded(pick(rep.raw, seg.enc, comp, sub), seg)
    return read


def message_of(source: Any) -> Er7Message:
    """The message a `Segment` / `Repetition` / `Er7Message` source belongs to."""
    if isinstance(source, Segment):
        return source.msg
    if isinstance(source, Repetition):
        return source.segment.msg
    return source  # type: ignore[no-any-return]
