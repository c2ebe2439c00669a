"""Transforms that read more of the message than the field's own value: a code's coding system, and
the notes of a segment group. Registered in `engine.mapping.transforms.CONFIGURABLE` like the others.

* ``by_system`` checks the coding system a code is sent in before translating it (HL7 v2.5.1 CWE.3 /
  CE.3 name of coding system, Table 0396): a CVX vaccine code (RXA-5.3 = ``CVX``, Table 0292) goes
  through the CVX → national table, a national code is kept, any other system fails the record, so a
  code is never passed into a field whose value domain it does not belong to.
* ``group_text`` joins the text of the segments of the current group, e.g. every NTE-3 of an ORU
  order group (HL7 v2.5.1 §7.4.1.1: OBR {NTE} {OBX {NTE}}) for the report's note field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from engine.errors import ConfigError, MappingError
from engine.mapping.transforms import CompileEnv, Value, _only, _text
from engine.message_view import Source

KEEP = "keep"
"""`by_system` action: the code is already in the target code system."""
_SEGMENT = re.compile(r"^[A-Z][A-Z0-9]{2}$")


class BySystem:
    """Translate a code according to its coding system:
    ``{by_system: {system: RXA-5.3, systems: {CVX: {lookup: cvx_to_national_vaccine}, NIP: keep,
    "": keep}}}``. `system` is a path read like the field's own (relative inside `each`); ``""`` is
    "no coding system sent". A system not listed fails: "has coding system 'WC', not one of ...\"."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = _only(settings, "by_system", ("system", "systems"))
        path = _text(s, "by_system", "system")
        if env.compile_getter is None:
            raise ConfigError("by_system: not available here (no message paths)")
        self.get_system = env.compile_getter(path)
        systems = s.get("systems")
        if not isinstance(systems, Mapping) or not systems:
            raise ConfigError("by_system: expected systems: {<coding system>: keep | <transform>, ...}")
        from engine.mapping.transforms import compile_transform  # defined after this module is imported

        self.steps: dict[str, Callable[[Value, Source], Value] | None] = {}
        for name, action in systems.items():
            if not isinstance(name, str):
                raise ConfigError(f"by_system: quote coding system names as text (got {name!r})")
            self.steps[name] = None if action == KEEP else compile_transform(action, env)
        self.known = ", ".join(repr(n) for n in self.steps)

    def __call__(self, value: Value, source: Source) -> Value:
        if value is None:
            return None
        system = (self.get_system(source) or "").strip()
        if system not in self.steps:
            raise MappingError(f"has coding system {system!r}, not one of {self.known}")
        step = self.steps[system]
        return value if step is None else step(value, source)


class GroupText:
    """The text of every `segment` of the current group, field `field`, joined by `sep` (default a new
    line); absent when there is none. The value read by the field's own path is not used (write the
    path of the first such text, e.g. ``NTE-3``, so the route reads plainly):
    ``{group_text: {segment: NTE, field: 3}}``. In a ``records: OBR[*]`` route the group is the OBR's
    order group; otherwise the whole message."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = _only(settings, "group_text", ("segment", "field", "sep"))
        segment = _text(s, "group_text", "segment")
        if not _SEGMENT.match(segment):
            raise ConfigError(f"group_text: {segment!r} is not a segment id such as NTE")
        number = s.get("field")
        if not isinstance(number, int) or number < 1:
            raise ConfigError("group_text: field must be a field number from 1")
        self.group, self.field, self.sep = f"{segment}[*]", str(number), str(s.get("sep", "\n"))

    def __call__(self, value: Value, source: Source) -> Value:
        texts = [t for t in (child.get(self.field) for child in source.children(self.group)) if t]
        return self.sep.join(texts) if texts else None
