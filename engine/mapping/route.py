"""Route files (`mappings/*.yaml`): load, check against the dataset schema and compile, once.

Everything a message needs at run time is prepared here: paths compiled, transforms instantiated,
code tables resolved, target fields checked against the dataset's schema. Any problem is a
`ConfigError` naming the route file and line (``mappings/adt_person.yaml:14``), raised at load or
`yonglink validate` time, never while mapping. The language is documented in docs/mapping.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from engine.config import KeyPath, load_yaml_with_lines
from engine.datasets.registry import DatasetRegistry
from engine.errors import ConfigError, PathSyntaxError
from engine.mapping import paths
from engine.mapping.code_tables import CodeTable
from engine.mapping.expr import Cond, compile_condition
from engine.mapping.identity import IDENTITY_FIELDS, compile_identity
from engine.mapping.model import (
    EachMap,
    FieldMap,
    FilterRule,
    Reader,
    Route,
    SourceReader,
    display_name,
)
from engine.mapping.transforms import CompileEnv, Value, compile_transform
from engine.message_view import Source

TOP_KEYS = ("id", "description", "match", "filter", "validate", "target", "records", "passthrough",
            "operation", "envelope", "identity", "fields", "each", "destinations")
MATCH_KEYS = ("channels", "message_type", "resource_type", "when")
FIELD_KEYS = ("path", "paths", "all", "const", "header", "field", "group", "when", "transforms")
EACH_KEYS = ("group", "when", "fields")
RECORDS_KEYS = ("group", "when")
FILTER_KEYS = ("drop_when", "keep_when", "reason")
ENVELOPE_KEYS = ("source_org", "record_time")
class _Loader:
    """Compiles one parsed route document; `fail` attaches file:line to every ConfigError."""

    def __init__(self, file: str, lines: Mapping[KeyPath, int], *, datasets: DatasetRegistry | None,
                 tables: Mapping[str, CodeTable], on_unmapped: Callable[[str], None]) -> None:
        self.file, self.lines, self.datasets = file, lines, datasets
        self.tables, self.on_unmapped = tables, on_unmapped
        self.kind: paths.Kind = "any"

    def line(self, *key: str | int) -> int:
        path: KeyPath = tuple(key)
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def fail(self, message: str, *key: str | int) -> ConfigError:
        dotted = ".".join(str(k) for k in key) or None
        return ConfigError(message, file=self.file, line=self.line(*key), key=dotted)

    def guard(self, fn: Callable[[], Any], *key: str | int) -> Any:
        """Run `fn`, re-raising its ConfigError / PathSyntaxError with this file and line."""
        try:
            return fn()
        except ConfigError as exc:
            if exc.file:
                raise
            raise self.fail(exc.bare_message, *key) from None
        except PathSyntaxError as exc:
            raise self.fail(str(exc), *key) from None

    def keys(self, doc: Any, allowed: tuple[str, ...], *key: str | int) -> Mapping[str, Any]:
        if not isinstance(doc, Mapping):
            raise self.fail(f"expected a mapping with keys {', '.join(allowed)}", *key)
        for k in doc:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f", did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
                raise self.fail(f"unknown key{hint}", *key, k)
        return doc

    def condition(self, text: Any, scope: paths.Scope, *key: str | int) -> Cond:
        kind = self.kind
        return self.guard(  # type: ignore[no-any-return]
            lambda: compile_condition(text, lambda p: paths.getter(kind, p, scope)), *key)

    def env(self, name: str, scope: paths.Scope) -> CompileEnv:
        kind = self.kind
        def cond(text: str) -> Cond:
            return compile_condition(text, lambda p: paths.getter(kind, p, scope))

        def getter(text: str) -> paths.Getter:
            return paths.getter(kind, text, scope)

        return CompileEnv(tables=self.tables, on_unmapped=self.on_unmapped, name=name, compile_condition=cond,
                          compile_getter=getter)

    # --- the document ----------------------------------------------------------------------------

    def load(self, doc: Any) -> Route:
        doc = self.keys(doc, TOP_KEYS)
        route_id = doc.get("id")
        if not isinstance(route_id, str) or not route_id:
            raise self.fail("every route needs an id (text)", "id")
        route = Route(id=route_id, file=self.file, line=1, description=str(doc.get("description", "")))
        self.match(route, doc.get("match"))
        self.kind = route.kind
        route.filters = tuple(self.filters(doc.get("filter")))
        route.field_lines["validate"] = self.line("validate")
        if "validate" in doc:
            if doc["validate"] not in ("structure", "none"):
                raise self.fail("validate: expected structure or none", "validate")
            if doc["validate"] == "structure" and route.kind != "hl7v2":
                raise self.fail("validate: structure applies to HL7 v2 routes (message_type)", "validate")
            route.validate_structure = doc["validate"] == "structure"
        route.passthrough = bool(doc.get("passthrough", False))
        dests = doc.get("destinations", [])
        if not isinstance(dests, list) or not all(isinstance(d, str) for d in dests):
            raise self.fail("destinations: expected a list of destination names", "destinations")
        route.destinations, route.destinations_line = tuple(dests), self.line("destinations")
        if route.passthrough:
            for k in ("target", "fields", "each", "operation", "envelope"):
                if k in doc:
                    raise self.fail("a passthrough route delivers the original message: no " + k, k)
            return route
        self.target(route, doc)
        self.body(route, doc)
        return route

    def match(self, route: Route, match: Any) -> None:
        if match is None:
            raise self.fail("every route needs a match (message_type, resource_type or channels)", "match")
        m = self.keys(match, MATCH_KEYS, "match")
        if "channels" in m:
            chans = m["channels"]
            if not isinstance(chans, list) or not all(isinstance(c, str) for c in chans):
                raise self.fail("expected a list of channel names", "match", "channels")
            route.channels = frozenset(chans)
        if "message_type" in m and "resource_type" in m:
            raise self.fail("a route reads HL7 v2 (message_type) or FHIR (resource_type), not both", "match")
        if "message_type" in m:
            route.kind = "hl7v2"
            types = self.alternatives(m["message_type"], "match", "message_type")
            for t in types:
                code, _, trigger = t.partition("^")
                if not code.isalnum() or (trigger and trigger != "*" and not trigger.isalnum()):
                    raise self.fail(f"{t!r} is not a message type such as ADT^A01 or ADT^*", "match",
                                    "message_type")
            route.message_types = frozenset(t for t in types if not t.endswith("^*") and "^" in t)
            route.message_codes = frozenset(t.partition("^")[0] for t in types
                                            if t.endswith("^*") or "^" not in t)
        elif "resource_type" in m:
            route.kind = "fhir"
            route.resource_types = frozenset(self.alternatives(m["resource_type"], "match", "resource_type"))
        self.kind = route.kind
        if "when" in m:
            route.when = self.condition(m["when"], "message", "match", "when")

    def alternatives(self, value: Any, *key: str) -> list[str]:
        if isinstance(value, str):
            items = [v.strip() for v in value.split("|")]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = [v.strip() for v in value]
        else:
            raise self.fail("expected text such as 'ADT^A01|ADT^A04' or a list", *key)
        if not all(items):
            raise self.fail("empty alternative", *key)
        return items

    def filters(self, spec: Any) -> Iterable[FilterRule]:
        if spec is None:
            return
        if not isinstance(spec, list):
            raise self.fail("expected a list of {drop_when|keep_when: condition, reason: text}", "filter")
        for i, rule in enumerate(spec):
            r = self.keys(rule, FILTER_KEYS, "filter", i)
            if ("drop_when" in r) == ("keep_when" in r):
                raise self.fail("give exactly one of drop_when / keep_when", "filter", i)
            reason = r.get("reason")
            if not isinstance(reason, str) or not reason:
                raise self.fail("a filter needs a reason (it is recorded with the message)", "filter", i)
            which = "drop_when" if "drop_when" in r else "keep_when"
            cond = self.condition(r[which], "message", "filter", i, which)
            yield FilterRule(cond, which == "drop_when", reason, self.line("filter", i))

    def target(self, route: Route, doc: Mapping[str, Any]) -> None:
        target = doc.get("target")
        if not isinstance(target, str):
            raise self.fail("a route needs a target dataset id (or passthrough: true)", "target")
        route.target, route.target_line = target, self.line("target")
        if self.datasets is not None:
            datasets = self.datasets
            route.dataset = self.guard(lambda: datasets.get(target), "target")

    def body(self, route: Route, doc: Mapping[str, Any]) -> None:
        known = dict(route.dataset.fields) if route.dataset is not None else None
        spec = doc.get("fields") or {}
        if not isinstance(spec, Mapping):
            raise self.fail("expected a mapping of target field → source", "fields")
        top: paths.Scope = "message"
        if "records" in doc:
            spec_r = doc["records"]
            when_text = None
            if isinstance(spec_r, Mapping):
                spec_r = self.keys(spec_r, RECORDS_KEYS, "records")
                when_text = spec_r.get("when")
                spec_r = spec_r.get("group")
            if not isinstance(spec_r, str):
                raise self.fail("expected a group path such as DG1[*] (or {group: DG1[*], when: ...})",
                                "records")
            records: str = spec_r
            self.guard(lambda: paths.check_path(self.kind, records), "records")
            route.records, top = records, paths.group_scope(self.kind, records)
            if when_text is not None:
                route.records_when = self.condition(when_text, top, "records", "when")
        route.fields = tuple(self.fields(route, spec, known, ("fields",), top, prefix=""))
        each = doc.get("each") or {}
        if not isinstance(each, Mapping):
            raise self.fail("expected a mapping of array field → {group, fields}", "each")
        groups = []
        for name, gspec in each.items():
            g = self.keys(gspec, EACH_KEYS, "each", name)
            info = self.check_field(name, known, "each", name)
            if info is not None and info.items is None:
                raise self.fail(f"{name} is not an array-of-rows field of {route.target}", "each", name)
            group = g.get("group")
            if not isinstance(group, str):
                raise self.fail("expected a group path such as OBX[*]", "each", name, "group")
            kind = self.kind
            self.guard(partial(paths.check_path, kind, group), "each", name, "group")
            scope = paths.group_scope(kind, group)
            when = self.condition(g["when"], scope, "each", name, "when") if "when" in g else None
            rows = g.get("fields") or {}
            if not isinstance(rows, Mapping):
                raise self.fail("expected a mapping of row field → source", "each", name, "fields")
            row_known = dict(info.items) if info is not None and info.items is not None else None
            route.field_lines[name] = self.line("each", name)
            groups.append(EachMap(name, self.line("each", name), group, when,
                                  tuple(self.fields(route, rows, row_known, ("each", name, "fields"), scope,
                                                    prefix=f"{name}."))))
        route.each = tuple(groups)
        env_spec = self.keys(doc.get("envelope") or {}, ENVELOPE_KEYS, "envelope")
        for key in ENVELOPE_KEYS:  # source_org is decided before `records` splits the message
            if key in env_spec:
                scope = "message" if key == "source_org" else top
                setattr(route, key, self.field(route, key, env_spec[key], {}, ("envelope", key), scope))
        if "operation" in doc:
            route.operation = self.field(route, "operation", doc["operation"], {}, ("operation",), top)
        if "identity" in doc:
            self.identity(route, doc["identity"], known)

    def identity(self, route: Route, spec: Any, known: Mapping[str, Any] | None) -> None:
        """The shared `identity:` block (engine/mapping/identity.py); it owns the fields it fills."""
        mapped = {f.name for f in route.fields}
        for name in IDENTITY_FIELDS:
            if name in mapped:
                raise self.fail(f"{name} is filled by identity: (remove it from fields)", "fields", name)
        kind, file, line = self.kind, self.file, self.line("identity")
        route.identity = self.guard(lambda: compile_identity(
            spec, kind=kind, resource_types=route.resource_types, file=file, line=line,
            dataset_fields=known, maps_patient_id="patient_id" in mapped), "identity")

    def group_field(self, s: Mapping[str, Any], scope: paths.Scope, key: tuple[str | int, ...]
                    ) -> SourceReader:
        """`{group: OBX[*], when: <condition>, path: "5"}`: the value at `path` in the first item of the
        group (relative to the record: an OBR's own OBX) where `when` holds; every such value with
        `all: true`. For record fields that live in one of several segments (an exam report's
        findings and impression OBX)."""
        kind = self.kind
        group, path = s.get("group"), s.get("path")
        if not isinstance(path, str):
            raise self.fail("a group field reads a `path` (text) in each chosen item", *key)
        if not isinstance(group, str):
            raise self.fail("expected a group path such as OBX[*]", *key, "group")
        self.guard(partial(paths.check_path, kind, group, scope), *key, "group")
        gscope = paths.group_scope(kind, group)
        read = self.guard(lambda: paths.getter(kind, path, gscope), *key, "path")
        when = self.condition(s["when"], gscope, *key, "when") if "when" in s else None
        return partial(_from_group, group, when, read, bool(s.get("all")))

    def check_field(self, name: Any, known: Mapping[str, Any] | None, *key: str | int) -> Any:
        if not isinstance(name, str):
            raise self.fail("field names are text", *key)
        if known is None:
            return None
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            raise self.fail(f"unknown field {name!r} for this dataset{hint}", *key)
        return known[name]

    def fields(self, route: Route, spec: Mapping[str, Any], known: Mapping[str, Any] | None,
               base: tuple[str, ...], scope: paths.Scope, *, prefix: str) -> Iterable[FieldMap]:
        seen: dict[str, Value] = {}
        for name, fspec in spec.items():
            self.check_field(name, known, *base, name)
            route.field_lines[prefix + name] = self.line(*base, name)
            fm = self.field(route, name, fspec, seen, (*base, name), scope)
            seen[name] = True
            yield fm

    def field(self, route: Route, name: str, spec: Any, earlier: Mapping[str, Any],
              key: tuple[str | int, ...], scope: paths.Scope) -> FieldMap:
        line = self.line(*key)
        if isinstance(spec, str):
            spec = {"path": spec}
        s = self.keys(spec, FIELD_KEYS, *key)
        sources = [k for k in ("path", "paths", "const", "header", "field") if k in s]
        if len(sources) != 1:
            raise self.fail("give exactly one of path, paths, const, header, field", *key)
        kind = self.kind
        get: SourceReader | None
        src = sources[0]
        value = s[src]
        if ("group" in s or "when" in s) and src != "path":
            raise self.fail("group / when read `path` in each item of a group", *key)
        if "when" in s and "group" not in s:
            raise self.fail("when: needs a group (the items it chooses from)", *key, "when")
        if src == "path" and "group" in s:
            get = self.group_field(s, scope, key)
            text = f"{s['group']} {value}"
        elif src == "path":
            if s.get("all"):
                get_all = self.guard(lambda: paths.all_getter(kind, value, scope), *key, "path")
                get = lambda source: get_all(source) or None  # noqa: E731
            else:
                get = self.guard(lambda: paths.getter(kind, value, scope), *key, "path")
            text = str(value)
        elif src == "paths":
            if not isinstance(value, list) or not value:
                raise self.fail("expected a list of paths", *key, "paths")
            getters = tuple(
                self.group_field(self.keys(p, ("group", "when", "path"), *key, "paths", i), scope,
                                 (*key, "paths", i))
                if isinstance(p, Mapping)
                else self.guard(partial(paths.getter, kind, p, scope), *key, "paths")
                for i, p in enumerate(value))
            text = "+".join(f"{p['group']} {p.get('path')}" if isinstance(p, Mapping) else str(p)
                            for p in value)
            if s.get("transforms", [None])[0] == "first":
                # `paths` + `first` is a coalesce: stop reading at the first value found (hot path).
                s = {**s, "transforms": s["transforms"][1:]}
                get = partial(_coalesce, getters)
            else:
                get = lambda source: [g(source) for g in getters]  # noqa: E731
        elif src == "const":
            const = value
            get = lambda source: const  # noqa: E731
            text = "const"
        elif src == "header":
            hkey = str(value)
            get = lambda source: source.header.get(hkey) or None  # noqa: E731
            text = f"header.{hkey}"
        else:
            other = str(value)
            if other not in earlier:
                raise self.fail(f"field: {other!r} is not a field mapped above this one", *key, "field")
            get = None
            text = other
        read: Reader
        if get is None:
            read = lambda source, rec: rec.get(other)  # noqa: E731
        else:
            source_only = get
            read = lambda source, rec: source_only(source)  # noqa: E731
        steps_spec = s.get("transforms", [])
        if not isinstance(steps_spec, list):
            raise self.fail("transforms: expected a list", *key, "transforms")
        env = self.env(f"{route.id}.{name}", scope)
        steps = tuple(self.guard(partial(compile_transform, t, env), *key, "transforms", i)
                      for i, t in enumerate(steps_spec))
        is_null = None
        if kind == "hl7v2" and src in ("path", "paths") and not s.get("all"):
            first_path = value if src == "path" else value[0]
            is_null = paths.hl7_null_getter(first_path) if isinstance(first_path, str) else None
        return FieldMap(name=name, line=line, source_text=text, read=read, steps=steps, get=get,
                        is_null=is_null)


def _from_group(group: str, when: Cond | None, read: paths.Getter, every: bool, source: Source) -> Value:
    values: list[str] = []
    for child in source.children(group):
        if when is None or when(child, None):
            value = read(child)
            if value:
                if not every:
                    return value
                values.append(value)
    return values or None


def _coalesce(getters: tuple[paths.Getter, ...], source: Source) -> Value:
    for get in getters:
        value = get(source)
        if value:
            return value
    return None


def load_route(path: str | Path, *, datasets: DatasetRegistry | None, tables: Mapping[str, CodeTable],
               on_unmapped: Callable[[str], None] = lambda table: None) -> Route:
    """Load and compile one route file; ConfigError names file:line for any problem."""
    file = display_name(Path(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read route file: {exc.strerror}", file=file) from None
    doc, lines = load_yaml_with_lines(text, file=file)
    loader = _Loader(file, lines, datasets=datasets, tables=tables, on_unmapped=on_unmapped)
    route = loader.load(doc)
    return route


def load_routes(files: Iterable[str | Path], *, datasets: DatasetRegistry | None,
                tables: Mapping[str, CodeTable], on_unmapped: Callable[[str], None] = lambda t: None
                ) -> list[Route]:
    """Load every route file; two routes with the same id are an error."""
    routes: list[Route] = []
    by_id: dict[str, Route] = {}
    for f in files:
        route = load_route(f, datasets=datasets, tables=tables, on_unmapped=on_unmapped)
        if route.id in by_id:
            raise ConfigError(f"route id {route.id!r} is also used by {by_id[route.id].file}",
                              file=route.file, line=1, key="id")
        by_id[route.id] = route
        routes.append(route)
    return routes
