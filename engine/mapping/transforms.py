"""Field transforms: small named steps applied in order to a value read from the source.

A transform is either a plain callable ``fn(value, source=None) -> value`` (``trim``, ``upper``,
``required`` ...) or a small class configured once at route load, ``Cls(settings, env)``, then called
per value (structlog processor style). Every transform takes ``(value, source)`` so the mapper calls
it directly, with no adapter per value; only ``when`` reads the source. Every transform lets ``None``
(absent) through unchanged unless its job is to handle absence (``default``, ``required``, ``const``).
A problem raises `MappingError` whose text is the predicate ("is not a valid date"); the field mapper
prefixes route file:line, field, path and value.

`TRANSFORMS` is the one explicit registry; docs/mapping.md documents each entry and its settings.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError, MappingError
from engine.mapping import formats, options
from engine.mapping.code_tables import CodeTable
from engine.mapping.expr import Cond
from engine.message_view import Source

Value = Any
"""A field value in flight: text, a number, a list of texts, or None (absent)."""


@dataclass
class CompileEnv:
    """What configurable transforms may use at load time."""

    tables: Mapping[str, CodeTable]
    compile_condition: Callable[[str], Cond]
    on_unmapped: Callable[[str], None] = lambda table: None
    """Called with the table id whenever a code is not in a table (metrics)."""
    inline_tables: dict[str, CodeTable] = field(default_factory=dict)
    name: str = ""
    """`route.field` being compiled: names inline tables in metrics."""
    compile_getter: Callable[[str], Callable[[Source], str | None]] | None = None
    """Compiles a path read like the field's own (for `by_system`); None where there are no paths."""


# --- plain callables -----------------------------------------------------------------------------


def trim(value: Value, source: Source | None = None) -> Value:
    """Strip surrounding whitespace; an all-blank text becomes absent."""
    if isinstance(value, str):
        return value.strip() or None
    return value


def upper(value: Value, source: Source | None = None) -> Value:
    """Upper-case text."""
    return value.upper() if isinstance(value, str) else value


def lower(value: Value, source: Source | None = None) -> Value:
    """Lower-case text."""
    return value.lower() if isinstance(value, str) else value


def first(value: Value, source: Source | None = None) -> Value:
    """First non-empty item of a list (a coalesce over `paths:`); other values unchanged."""
    if isinstance(value, list):
        return next((v for v in value if v not in (None, "")), None)
    return value


def required(value: Value, source: Source | None = None) -> Value:
    """Fail the record when the value is absent."""
    if value is None or value == "" or value == []:
        raise MappingError("is required but empty")
    return value


# --- configurable --------------------------------------------------------------------------------


def _text(settings: Any, name: str, key: str | None = None) -> str:
    if isinstance(settings, Mapping) and key is not None:
        settings = settings.get(key)
    if not isinstance(settings, str):
        raise ConfigError(f"{name}: expected text" + (f" for {key!r}" if key else ""))
    return settings


def _only(settings: Any, name: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"{name}: expected settings {{{', '.join(allowed)}}}")
    for key in settings:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f", did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
            raise ConfigError(f"{name}: unknown setting {key!r}{hint}")
    return settings


class Concat:
    """Join a list (from `paths:`) with `sep` (default ""), skipping absent items.
    ``concat`` / ``{concat: " "}`` / ``{concat: {sep: " "}}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        if isinstance(settings, str):
            self.sep = settings
        else:
            self.sep = str(_only(settings, "concat", ("sep",)).get("sep", ""))

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if isinstance(value, list):
            parts = [str(v) for v in value if v not in (None, "")]
            return self.sep.join(parts) if parts else None
        return value


class Split:
    """Split text on `sep`; with `index` (1-based) keep that part, else a list.
    ``{split: ","}`` / ``{split: {sep: "-", index: 1}}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        if isinstance(settings, str):
            self.sep, self.index = settings, None
        else:
            s = _only(settings, "split", ("sep", "index"))
            self.sep = _text(s, "split", "sep")
            index = s.get("index")
            if index is not None and (not isinstance(index, int) or index < 1):
                raise ConfigError("split: index must be a whole number from 1")
            self.index = index

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if not isinstance(value, str):
            return value
        parts = value.split(self.sep)
        if self.index is None:
            return parts
        return (parts[self.index - 1] or None) if self.index <= len(parts) else None


class Default:
    """Use a constant when the value is absent: ``{default: "9"}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        self.default = settings

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        return self.default if value is None or value == "" else value


class Const:
    """Always this constant, whatever the source says: ``{const: "01"}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        self.const = settings

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        return self.const


class Replace:
    """Replace every `old` by `new` in text: ``{replace: {old: " ", new: ""}}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = _only(settings, "replace", ("old", "new"))
        self.old, self.new = _text(s, "replace", "old"), str(s.get("new", ""))

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        return value.replace(self.old, self.new) or None if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class Truncated:
    """What `truncate` returns when it had to cut: the mapper keeps `value` and names the field in
    ``envelope.truncated`` (counted by data quality), so a cut is visible, never silent."""

    value: str


class Truncate:
    """Cut display text (an item or diagnosis name) to its field's limit, N characters, instead of
    failing the record: ``{truncate: 50}``. Only for display text: identifiers and codes that are too
    long must still fail (the schema's maxLength does that), so never put this on a code or number."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        if not isinstance(settings, int) or settings < 1:
            raise ConfigError("truncate: expected a positive length")
        self.n = settings

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if isinstance(value, str) and len(value) > self.n:
            return Truncated(value[:self.n])
        return value


class Date:
    """HL7 TS/DTM or FHIR date/dateTime → D8 ``YYYYMMDD``. ``date`` / ``{date: {timezone: keep}}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        self.keep = _only(settings, "date", ("timezone",)).get("timezone", "beijing") == "keep"

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        return formats.to_d8(value, keep_timezone=self.keep) if isinstance(value, str) else value


class DateTime:
    """HL7 TS/DTM or FHIR dateTime → DT15 ``YYYYMMDDThhmmss`` (Beijing time unless `timezone: keep`)."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        self.keep = _only(settings, "datetime", ("timezone",)).get("timezone", "beijing") == "keep"

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        return formats.to_dt15(value, keep_timezone=self.keep) if isinstance(value, str) else value


class Regex:
    """Search text; keep group `group` (default: 1 if the pattern has groups, else the whole match).
    No match → absent, or an error with `on_mismatch: error`.
    ``{regex: "^(\\d+)"}`` / ``{regex: {pattern: ..., group: 2, on_mismatch: error}}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = {"pattern": settings} if isinstance(settings, str) else _only(
            settings, "regex", ("pattern", "group", "on_mismatch"))
        try:
            self.rx = re.compile(_text(s, "regex", "pattern"))
        except re.error as exc:
            raise ConfigError(f"regex: bad pattern: {exc}") from None
        self.group = s.get("group", 1 if self.rx.groups else 0)
        if not isinstance(self.group, int) or self.group > self.rx.groups:
            raise ConfigError(f"regex: group {self.group!r} does not exist in the pattern")
        self.strict = s.get("on_mismatch", "null") == "error"

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if not isinstance(value, str):
            return value
        m = self.rx.search(value)
        if m is None:
            if self.strict:
                raise MappingError(f"does not match /{self.rx.pattern}/")
            return None
        return m.group(self.group) or None


class Number:
    """Text → JSON number (whole numbers as integers). ``number`` / ``{number: {type: integer,
    on_invalid: null}}``; invalid text is an error unless `on_invalid: null`."""

    _NUM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
    _INT = re.compile(r"[+-]?\d+")

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = _only(settings, "number", ("type", "on_invalid"))
        self.integer = s.get("type", "number") == "integer"
        self.lenient = s.get("on_invalid", "error") == "null"

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not self._NUM.match(text):
            if self.lenient:
                return None
            raise MappingError("is not a number")
        if self._INT.fullmatch(text):
            return int(text)
        if self.integer:
            if self.lenient:
                return None
            raise MappingError("is not a whole number")
        return float(text)


class Lookup:
    """Translate a code with a code table (mappings/tables/): ``{lookup: hl7_0001_to_gbt_2261_1}`` /
    ``{lookup: {table: ..., on_empty: lookup}}`` (look up "" for an absent code; default: stay absent).
    The table's `unmapped` policy decides what an unknown code does; each one is counted in metrics."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = {"table": settings} if isinstance(settings, str) else _only(
            settings, "lookup", ("table", "on_empty"))
        table_id = _text(s, "lookup", "table")
        if table_id not in env.tables:
            close = difflib.get_close_matches(table_id, list(env.tables), n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"lookup: unknown code table {table_id!r}{hint}")
        self.table = env.tables[table_id]
        self.on_empty = s.get("on_empty", "skip") == "lookup"
        self.on_unmapped = env.on_unmapped

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if value is None or value == "":
            if not self.on_empty:
                return None
            value = ""
        code = str(value)
        if code not in self.table.mapping:
            self.on_unmapped(self.table.id)
        try:
            return self.table.lookup(code)
        except MappingError:
            raise MappingError(f"has no mapping in code table {self.table.id}") from None


class MapValues(Lookup):
    """An inline code table for codes no shared table covers:
    ``{map: {values: {BOOKED: "1"}, unmapped: error | pass | {default: "9"}}}`` (quote codes)."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = _only(settings, "map", ("values", "unmapped", "on_empty"))
        values = s.get("values")
        if not isinstance(values, Mapping) or not values:
            raise ConfigError("map: expected values: {code: target, ...}")
        for k, v in values.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ConfigError(f"map: quote codes so YAML keeps them as text (got {k!r}: {v!r})")
        unmapped = s.get("unmapped", "error")
        policy, default = "error", None
        if unmapped == "pass":
            policy = "pass"
        elif isinstance(unmapped, Mapping) and list(unmapped) == ["default"]:
            policy, default = "default", str(unmapped["default"])
        elif unmapped != "error":
            raise ConfigError('map: unmapped must be error, pass or {default: "<code>"}')
        table = CodeTable(id=f"inline:{env.name}", mapping=dict(values), policy=policy,  # type: ignore[arg-type]
                          default=default)
        env.inline_tables[table.id] = table
        self.table = table
        self.on_empty = s.get("on_empty", "skip") == "lookup"
        self.on_unmapped = env.on_unmapped


class ResidentId:
    """Check an 18-character GB 11643 resident ID number (ISO 7064 MOD 11-2 check character).
    ``resident_id`` → the ID (upper-case X); ``{resident_id: {derive: birth_date}}`` → its D8 birth
    date; ``{derive: sex}`` → GB/T 2261.1 code (17th digit odd 1, even 2); ``on_invalid: null`` drops
    an invalid ID instead of failing the record. Errors quote the ID masked (330203********0171)."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        s = _only(settings, "resident_id", ("derive", "on_invalid"))
        self.derive = s.get("derive", "id")
        if self.derive not in ("id", "birth_date", "sex"):
            raise ConfigError("resident_id: derive must be id, birth_date or sex")
        self.lenient = s.get("on_invalid", "error") == "null"

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if not isinstance(value, str):
            return value
        try:
            checked = formats.check_resident_id(value)
        except MappingError:
            if self.lenient:
                return None
            raise
        if self.derive == "birth_date":
            return formats.id_birth_date(checked)
        if self.derive == "sex":
            return formats.id_sex(checked)
        return checked


class When:
    """Keep the value only when a condition holds (else absent): ``{when: "PV1-2 == 'O'"}``; the
    condition may read `value`. See engine/mapping/expr.py for the condition language."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        self.cond = env.compile_condition(_text(settings, "when"))

    def __call__(self, value: Value, source: Source) -> Value:
        return value if self.cond(source, value) else None


class Required:
    """``required`` with a message: ``{required: "PID-3 must carry the citizen ID"}``."""

    def __init__(self, settings: Any, env: CompileEnv) -> None:
        self.message = _text(settings, "required")

    def __call__(self, value: Value, source: Source | None = None) -> Value:
        if value is None or value == "" or value == []:
            raise MappingError(f"is required but empty ({self.message})")
        return value


PLAIN: dict[str, Callable[[Value, Source | None], Value]] = {
    "trim": trim, "upper": upper, "lower": lower, "first": first, "required": required,
    "concat": Concat(None, None),  # type: ignore[arg-type]  # settings-free form
    "date": Date(None, None),  # type: ignore[arg-type]
    "datetime": DateTime(None, None),  # type: ignore[arg-type]
    "number": Number(None, None),  # type: ignore[arg-type]
    "resident_id": ResidentId(None, None),  # type: ignore[arg-type]
}
"""Transforms written as a bare name."""

CONFIGURABLE: dict[str, type] = {
    "concat": Concat, "split": Split, "default": Default, "const": Const, "replace": Replace,
    "truncate": Truncate, "date": Date, "datetime": DateTime, "regex": Regex, "number": Number,
    "lookup": Lookup, "map": MapValues, "resident_id": ResidentId, "when": When, "required": Required,
}
"""Transforms written as ``{name: settings}``."""

from engine.mapping.coding import BySystem, GroupText  # noqa: E402  (they build on the classes above)

CONFIGURABLE.update({"by_system": BySystem, "group_text": GroupText})

TRANSFORMS = sorted(set(PLAIN) | set(CONFIGURABLE))
"""Every transform name, for error hints and docs."""

Step = Callable[[Value, Source], Value]
"""A compiled transform as the mapper calls it."""


def compile_transform(spec: Any, env: CompileEnv) -> Step:
    """A transform spec from YAML (a name, or a one-key mapping name → settings) → a `Step`.

    Raises ConfigError (without file:line; the route loader adds it) for unknown names or settings.
    Option values are checked against their sets first (`engine.mapping.options`), also for transforms
    nested in another (`by_system`'s per-system steps).
    """
    spec = options.normalise(spec)
    if isinstance(spec, str):
        name, settings, bare = spec, None, True
    elif isinstance(spec, Mapping) and len(spec) == 1:
        name, settings = next(iter(spec.items()))
        bare = False
    else:
        raise ConfigError("a transform is a name (trim) or a one-key mapping ({lookup: table_id})")
    if bare and name in PLAIN:
        return PLAIN[name]
    if name not in CONFIGURABLE:
        if name in PLAIN:
            raise ConfigError(f"transform {name!r} takes no settings")
        close = difflib.get_close_matches(str(name), TRANSFORMS, n=1)
        hint = f", did you mean {close[0]!r}?" if close else f" (known: {', '.join(TRANSFORMS)})"
        raise ConfigError(f"unknown transform {name!r}{hint}")
    return CONFIGURABLE[name](settings, env)  # type: ignore[no-any-return]
