"""A compiled route: what `engine.mapping.route` builds from a route file and the mapper runs.

Nothing here parses YAML: these are the immutable pieces (fields with their reader and transform
steps, `each` row groups, filter rules) plus `Route.matches`, the engine's route selection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.datasets.registry import Dataset
from engine.errors import MappingError
from engine.mapping import paths
from engine.mapping.expr import Cond
from engine.mapping.identity import Identity
from engine.mapping.transforms import Step, Value
from engine.message_view import Source
from engine.resources import SOURCE_ROOT

OPERATIONS = ("create", "update", "delete")

Reader = Callable[[Source, Mapping[str, Value]], Value]
"""Reads a field's raw value: (source, fields mapped so far) -> value."""
SourceReader = Callable[[Source], Value]
"""Reads a field's raw value from the source alone (every kind of field but ``field:``)."""


@dataclass(frozen=True)
class FieldMap:
    """One compiled target field: where it reads, what it does to the value, and where it is written."""

    name: str
    line: int
    source_text: str
    read: Reader
    steps: tuple[Step, ...]
    get: SourceReader | None = None
    """`read` without the record argument when the field does not need it: the mapper calls this one,
    saving a call per field per message."""
    is_null: paths.NullGetter | None = None
    """HL7 v2: whether the source sends the explicit null ``""`` where the field reads (its first path).
    In an update the field is then written as ``null`` (cleared) instead of left out."""


@dataclass(frozen=True)
class EachMap:
    """An array field built from a repeating group: one row per group item (`each:`)."""

    name: str
    line: int
    group: str
    when: Cond | None
    fields: tuple[FieldMap, ...]


@dataclass(frozen=True)
class FilterRule:
    """Drop the message when `drop` is True and the condition holds (or `keep_when` fails)."""

    cond: Cond
    drop_when_true: bool
    reason: str
    line: int


@dataclass
class Route:
    """A compiled route. `file` is the display name used in errors."""

    id: str
    file: str
    line: int
    description: str = ""
    kind: paths.Kind = "any"
    channels: frozenset[str] | None = None
    message_types: frozenset[str] = frozenset()
    message_codes: frozenset[str] = frozenset()
    resource_types: frozenset[str] = frozenset()
    versions: frozenset[str] = frozenset()
    """`match.version`: HL7 v2 versions (MSH-12.1) the route takes; empty = any."""
    when: Cond | None = None
    filters: tuple[FilterRule, ...] = ()
    target: str | None = None
    records: str | None = None
    """A repeating group (``DG1[*]``): one record per item, fields read relative to it."""
    records_when: Cond | None = None
    """`records: {group, when}`: only items where this holds become records; when none does, the
    route gives no result at all (as if it had not matched: an ORU without imaging orders is no
    exam report)."""
    dataset: Dataset | None = None
    target_line: int = 0
    passthrough: bool = False
    fields: tuple[FieldMap, ...] = ()
    each: tuple[EachMap, ...] = ()
    operation: FieldMap | None = None
    source_org: FieldMap | None = None
    record_time: FieldMap | None = None
    destinations: tuple[str, ...] = ()
    destinations_line: int = 0
    identity: Identity | None = None
    """`identity:`: fills id_number / id_type_code / health_card_no (engine/mapping/identity.py)."""
    validate_structure: bool = False
    """`validate: structure`: hl7apy structure/datatype validation before mapping (HL7 v2 only)."""
    field_lines: dict[str, int] = field(default_factory=dict)

    def matches(self, channel: str | None, source: Source) -> bool:
        """The engine's selection: channel, kind, message/resource type, version, then `when`."""
        return self.mismatch(channel, source) is None

    def mismatch(self, channel: str | None, source: Source) -> Mismatch | None:
        """Why this route does not select the message (the first check that fails, in the order the
        engine checks), or None when it does. `yonglink map` shows these for the closest routes."""
        if self.channels is not None and channel not in self.channels:
            return Mismatch(0, f"only for channels {', '.join(sorted(self.channels))}, not {channel!r}")
        header = source.header
        if self.kind != "any" and header.get("kind") != self.kind:
            return Mismatch(1, f"a {self.kind} route; the message is {header.get('kind') or 'unknown'}")
        if self.kind == "hl7v2" and (self.message_types or self.message_codes):
            mtype = header.get("message_type", "")
            if mtype not in self.message_types and header.get("message_code", "") not in self.message_codes:
                wanted = sorted(self.message_types) + [f"{c}^*" for c in sorted(self.message_codes)]
                return Mismatch(2, f"message type {mtype or '(none)'} is not one of {', '.join(wanted)}")
        if self.kind == "fhir" and self.resource_types:
            if header.get("resource_type", "") not in self.resource_types:
                return Mismatch(2, f"resource type {header.get('resource_type') or '(none)'} is not one of "
                                   f"{', '.join(sorted(self.resource_types))}")
        if self.versions and header.get("version", "") not in self.versions:
            return Mismatch(3, f"version {header.get('version') or '(none)'} is not one of "
                               f"{', '.join(sorted(self.versions))}")
        if self.when is None:
            return None
        try:
            return None if self.when(source, None) else Mismatch(4, "its `when` condition is false")
        except MappingError as exc:  # a condition that cannot be evaluated on this input does not select it
            return Mismatch(4, f"its `when` condition cannot be evaluated: {exc}")

    def line_of(self, field_name: str) -> int:
        """The line of a target field (row fields as ``results.unit``), else the `target:` line."""
        return self.field_lines.get(field_name) or self.target_line or self.line


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Why a route does not select a message: `stage` is how far the checks got (0 channel, 1 kind,
    2 message or resource type, 3 version, 4 the `when` condition), so a higher stage is a closer miss."""

    stage: int
    reason: str


def display_name(path: Path) -> str:
    """`mappings/adt_person.yaml` for the shipped files (in a checkout or installed), the path as given
    otherwise."""
    try:
        return path.resolve().relative_to(SOURCE_ROOT).as_posix()
    except ValueError:
        return str(path)


def check_operation(value: Value) -> str:
    """An `operation:` result must be create, update or delete."""
    if value not in OPERATIONS:
        raise MappingError(f"must be one of {', '.join(OPERATIONS)}")
    return str(value)
