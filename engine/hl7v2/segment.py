"""One ER7 segment and one field repetition, split lazily (HL7 v2.5.1 §2.5.3 message construction).

A `Segment` is built on the first read of it and splits its fields then; each field's repetitions
are split on first read of that field (cached); components and subcomponents are sliced per read with
bounded ``str.split``. Both `Segment` and `Repetition` satisfy `engine.message_view.Source` so ``each:``
rows read relative paths: ``"5"``, ``"3[*].1"`` on a segment, ``"1"``, ``"4.2"`` on a repetition. A
path starting with a letter (``"PID-3.1"``, ``"MSH-10"``) is read against the whole message instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Literal

from engine.errors import PathSyntaxError
from engine.hl7v2.encoding import Encoding, unescape
from engine.hl7v2.path import ALL, FIRST, Path, compile_path
from engine.message_view import Source

if TYPE_CHECKING:
    from engine.hl7v2.er7 import Er7Message

HL7_NULL = '""'
"""The HL7 explicit null (§2.5.3): read as absent by `get`, kept by `raw_value`."""


def pick(raw: str, enc: Encoding, comp: int | None, sub: int | None) -> str:
    """Component ``comp`` / subcomponent ``sub`` (1-based) of one raw repetition, ``""`` if absent."""
    if comp is None:
        return raw
    parts = raw.split(enc.component, comp)
    if comp > len(parts):
        return ""
    value = parts[comp - 1]
    if sub is None:
        return value
    if not enc.subcomponent:  # 3-character MSH-2: no subcomponents declared
        return value if sub == 1 else ""
    subs = value.split(enc.subcomponent, sub)
    return subs[sub - 1] if sub <= len(subs) else ""


class Segment:
    """One segment; ``fields[n]`` is the raw text of ``<name>-n`` (``fields[0]`` is the name)."""

    __slots__ = ("_reps", "enc", "fields", "index", "msg", "name", "raw")

    kind: Literal["hl7v2"] = "hl7v2"

    def __init__(self, msg: Er7Message, index: int, raw: str) -> None:
        self.msg, self.index, self.raw, self.name = msg, index, raw, raw[:3]
        self.enc: Encoding = msg.encoding
        # Split into fields now: a Segment is built on its first read (`Er7Message._seg`), so the split
        # is never wasted, and every later read indexes a plain list.
        fields = raw.split(self.enc.field)
        if self.name == "MSH":
            fields.insert(1, self.enc.field)
        self.fields: list[str] = fields
        """Raw field texts; for MSH, ``fields[1]`` is the field separator (MSH-1, §2.14.9.1)."""
        self._reps: dict[int, list[str]] | None = None

    def reps(self, field: int) -> list[str]:
        """Raw repetitions of field ``field`` (``[]`` when absent or empty)."""
        cache = self._reps
        if cache is None:
            cache = self._reps = {}
        got = cache.get(field)
        if got is None:
            fields = self.fields
            text = fields[field] if field < len(fields) else ""
            if not text:
                got = []
            elif field <= 2 and self.name == "MSH":  # separators are never split
                got = [text]
            else:
                got = text.split(self.msg.encoding.repetition)
            cache[field] = got
        return got

    def decode(self, raw: str) -> str:
        """Decode escape sequences in one raw value of this message."""
        enc = self.msg.encoding
        return unescape(raw, enc, self.msg.codec) if enc.escape in raw else raw

    def raw_value(self, field: int, rep: int = 1, component: int | None = None,
                  subcomponent: int | None = None) -> str:
        """Undecoded text at ``field[rep].component.subcomponent``; ``""`` when absent."""
        reps = self.reps(field)
        if rep > len(reps):
            return ""
        if field <= 2 and self.name == "MSH":
            return reps[0]
        return pick(reps[rep - 1], self.msg.encoding, component, subcomponent)

    def raw_values(self, p: Path) -> Iterator[str]:
        """Undecoded values of this segment selected by a path's field part (whole line if none)."""
        if p.field is None:
            yield self.raw
            return
        reps = self._select(p, all_when_omitted=False)
        if p.field <= 2 and self.name == "MSH":
            yield from reps
            return
        enc = self.msg.encoding
        for rep in reps:
            yield pick(rep, enc, p.component, p.subcomponent)

    def _select(self, p: Path, *, all_when_omitted: bool) -> list[str]:
        reps = self.reps(p.field or 0)
        f = p.rep_filter
        if f is not None:
            enc = self.msg.encoding
            return [r for r in reps if self.decode(pick(r, enc, f.component, f.subcomponent)) == f.value]
        if p.rep == ALL or (p.rep == FIRST and all_when_omitted):
            return reps
        i = 1 if p.rep == FIRST else p.rep
        return reps[i - 1:i]

    def repetitions(self, p: Path, *, all_when_omitted: bool) -> list[Repetition]:
        """The field repetitions a path selects, as `Repetition` sources."""
        field = p.field or 0
        return [Repetition(self, field, r) for r in self._select(p, all_when_omitted=all_when_omitted)]

    # --- Source protocol -------------------------------------------------------------------------

    def get(self, path: str) -> str | None:
        """First non-empty value at a relative path (``5``, ``3[CX.5=ID].1``) or absolute path."""
        if path[:1].isalpha():
            return self.msg.get(path)
        for raw in self.raw_values(compile_path(path, "field")):
            if raw and raw != HL7_NULL:
                return self.decode(raw)
        return None

    def get_all(self, path: str) -> list[str]:
        """Every non-empty value at a relative or absolute path."""
        if path[:1].isalpha():
            return self.msg.get_all(path)
        return [self.decode(r) for r in self.raw_values(compile_path(path, "field"))
                if r and r != HL7_NULL]

    def children(self, group_path: str) -> list[Source]:
        """Field repetitions (``3[*]``), or segments that follow this one up to the next segment of
        this segment's name (``OBX[*]`` inside an OBR: that order's observations)."""
        if group_path[:1].isalpha():
            p = compile_path(group_path)
            following = [self.msg._seg(i) for i in self.msg.following(self.index, p.segment or "")]
            if p.seg_index not in (ALL, FIRST):
                following = following[p.seg_index - 1:p.seg_index]
            return children_of(following, p)
        p = compile_path(group_path, "field")
        if p.component is not None:
            raise not_a_group(p)
        return list(self.repetitions(p, all_when_omitted=True))

    @property
    def header(self) -> Mapping[str, str]:
        """The message's header (`Er7Message.header`)."""
        return self.msg.header

    def __repr__(self) -> str:
        return f"<Segment {self.name} #{self.index + 1}>"


class Repetition:
    """One repetition of one field; relative paths are ``component[.subcomponent]``."""

    __slots__ = ("field", "raw", "segment")

    kind: Literal["hl7v2"] = "hl7v2"

    def __init__(self, segment: Segment, field: int, raw: str) -> None:
        self.segment, self.field, self.raw = segment, field, raw

    def _values(self, path: str) -> str:
        p = compile_path(path, "component")
        return pick(self.raw, self.segment.msg.encoding, p.component, p.subcomponent)

    def get(self, path: str) -> str | None:
        """Component (``1``) or subcomponent (``4.1``) of this repetition, or an absolute path."""
        if path[:1].isalpha():
            return self.segment.msg.get(path)
        raw = self._values(path)
        return self.segment.decode(raw) if raw and raw != HL7_NULL else None

    def get_all(self, path: str) -> list[str]:
        """``[get(path)]`` when non-empty (a repetition holds one value per path)."""
        if path[:1].isalpha():
            return self.segment.msg.get_all(path)
        value = self.get(path)
        return [] if value is None else [value]

    def children(self, group_path: str) -> list[Source]:
        """A repetition has no repeating groups inside it."""
        raise PathSyntaxError(f"HL7 path {group_path!r}: a field repetition has no repeating groups",
                              path=group_path)

    @property
    def header(self) -> Mapping[str, str]:
        """The message's header."""
        return self.segment.msg.header

    def __repr__(self) -> str:
        return f"<Repetition {self.segment.name}-{self.field}>"


def children_of(segs: list[Segment], p: Path) -> list[Source]:
    """Sources for an absolute group path: the segments, or the field repetitions in them."""
    if p.field is None:
        return list(segs)
    if p.component is not None:
        raise not_a_group(p)
    return [rep for seg in segs for rep in seg.repetitions(p, all_when_omitted=True)]


def not_a_group(p: Path) -> PathSyntaxError:
    """The error for a ``children`` path that points below a field repetition."""
    return PathSyntaxError(f"HL7 path {p.text!r} names a component, not a repeating group "
                           "(use a segment such as 'OBX[*]' or a field such as 'PID-3[*]')",
                           path=p.text)
