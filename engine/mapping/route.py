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

from engine.config import ConfigErrors, KeyPath, load_yaml_with_lines
from engine.datasets.registry import DatasetRegistry
from engine.errors import ConfigError, PathSyntaxError
from engine.mapping import path_check, paths
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
MATCH_KEYS = ("channels", "message_type", "resource_type", "version", "when")
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
        self.errors: list[ConfigError] = []
        """Problems found so far: a route reports every bad field, not only the first."""
        self.versions: tuple[str, ...] = path_check.DEFAULT_VERSIONS
        self.codes: frozenset[str] = frozenset()
        self.partial: Route | None = None
        """The route as far as it was compiled (its id, match and destinations), also when it failed."""
        self.group: Any = None
        """The compiled HL7 group path (`OBX[*]`, `PID-3[*]`) relative paths are read in, else None."""

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

    def collect(self, fn: Callable[[], Any], *key: str | int) -> Any:
        """Run `fn`; a ConfigError is kept in `errors` (None returned) so loading goes on."""
        try:
            return self.guard(fn, *key)
        except ConfigErrors as exc:
            self.errors.extend(exc.errors)
        except ConfigError as exc:
            self.errors.append(exc)
        return None

    def check_structure(self, text: str, scope: paths.Scope) -> None:
        """HL7 v2 paths: the segment, field, data type and component exist in the route's versions
        (`engine.mapping.path_check`); raise ConfigError with the suggestion otherwise."""
        if self.kind != "hl7v2" or not isinstance(text, str) or text.startswith(paths.HEADER):
            return
        from engine.hl7v2.path import compile_path

        if text[:1].isalpha() or scope == "message":
            compiled, context = compile_path(text), None
        else:
            compiled = compile_path(text, "component" if scope == "repetition" else "field")
            context = self.group
        problem = path_check.check(compiled, versions=self.versions, codes=self.codes, context=context)
        if problem is not None:
            raise ConfigError(problem)

    def getter(self, text: str, scope: paths.Scope) -> paths.Getter:
        """`paths.getter`, plus the structure check for HL7 v2 paths."""
        get = paths.getter(self.kind, text, scope)
        self.check_structure(text, scope)
        return get

    def all_getter(self, text: str, scope: paths.Scope) -> paths.AllGetter:
        get = paths.all_getter(self.kind, text, scope)
        self.check_structure(text, scope)
        return get

    def condition(self, text: Any, scope: paths.Scope, *key: str | int) -> Cond:
        return self.guard(  # type: ignore[no-any-return]
            lambda: compile_condition(text, lambda p: self.getter(p, scope)), *key)

    def env(self, name: str, scope: paths.Scope) -> CompileEnv:
        def cond(text: str) -> Cond:
            return compile_condition(text, lambda p: self.getter(p, scope))

        def getter(text: str) -> paths.Getter:
            return self.getter(text, scope)

        return CompileEnv(tables=self.tables, on_unmapped=self.on_unmapped, name=name, compile_condition=cond,
                          compile_getter=getter)

    # --- the document ----------------------------------------------------------------------------

    def load(self, doc: Any) -> Route:
        """Compile the document; every problem found is raised together (`ConfigErrors`)."""
        try:
            route = self._load(doc)
        except ConfigError as exc:
            self.errors.append(exc)
        if self.errors:
            unique = {str(e): e for e in self.errors}
            raise ConfigErrors(sorted(unique.values(), key=lambda e: (e.line or 0, str(e))))
        return route

    def _load(self, doc: Any) -> Route:
        doc = self.keys(doc, TOP_KEYS)
        route_id = doc.get("id")
        if not isinstance(route_id, str) or not route_id:
            raise self.fail("every route needs an id (text)", "id")
        route = Route(id=route_id, file=self.file, line=1, description=str(doc.get("description", "")))
        self.partial = route
        self.match(route, doc.get("match"))
        self.kind = route.kind
        route.filters = tuple(self.collect(lambda: tuple(self.filters(doc.get("filter"))), "filter") or ())
        route.field_lines["validate"] = self.line("validate")
        if "validate" in doc:
            if doc["validate"] not in ("structure", "none"):
                self.errors.append(self.fail(f"expected structure or none, got {doc['validate']!r}",
                                             "validate"))
            elif doc["validate"] == "structure" and route.kind != "hl7v2":
                self.errors.append(self.fail("structure applies to HL7 v2 routes (message_type)",
                                             "validate"))
            route.validate_structure = doc["validate"] == "structure"
        passthrough = doc.get("passthrough", False)
        if not isinstance(passthrough, bool):
            self.errors.append(self.fail(f"expected true or false, got {passthrough!r}", "passthrough"))
        route.passthrough = passthrough is True
        dests = doc.get("destinations", [])
        if not isinstance(dests, list) or not all(isinstance(d, str) for d in dests):
            raise self.fail("expected a list of destination names", "destinations")
        route.destinations, route.destinations_line = tuple(dests), self.line("destinations")
        if route.passthrough:
            for k in ("target", "fields", "each", "operation", "envelope"):
                if k in doc:
                    self.errors.append(self.fail("a passthrough route delivers the original message: no "
                                                 + k, k))
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
            route.field_lines["match.channels"] = self.line("match", "channels")
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
            self.codes = frozenset(t.partition("^")[0] for t in types)
            if "version" in m:
                route.versions = frozenset(self.versions_of(m["version"]))
                self.versions = tuple(v for v in path_check.supported_versions() if v in route.versions)
        elif "resource_type" in m:
            route.kind = "fhir"
            route.resource_types = frozenset(self.alternatives(m["resource_type"], "match", "resource_type"))
        if "version" in m and route.kind != "hl7v2":
            raise self.fail("version applies to HL7 v2 routes (message_type); MSH-12 is matched", "match",
                            "version")
        self.kind = route.kind
        if "when" in m:
            route.when = self.condition(m["when"], "message", "match", "when")

    def versions_of(self, value: Any) -> list[str]:
        """`match.version`: HL7 v2 versions (MSH-12.1) hl7apy knows, as text ('2.5.1|2.4' or a list)."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise self.fail(f"quote the version: {value!r} is read by YAML as a number", "match", "version")
        items = self.alternatives(value, "match", "version")
        known = path_check.supported_versions()
        for v in items:
            if v not in known:
                close = difflib.get_close_matches(v, known, n=1)
                hint = f", did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
                raise self.fail(f"unknown HL7 v2 version {v!r}{hint}", "match", "version")
        return items

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
            compiled = self.collect(partial(self.filter_rule, i, rule), "filter", i)
            if compiled is not None:
                yield compiled

    def filter_rule(self, i: int, rule: Any) -> FilterRule:
        r = self.keys(rule, FILTER_KEYS, "filter", i)
        if ("drop_when" in r) == ("keep_when" in r):
            raise self.fail("give exactly one of drop_when / keep_when", "filter", i)
        reason = r.get("reason")
        if not isinstance(reason, str) or not reason:
            raise self.fail("a filter needs a reason (it is recorded with the message)", "filter", i)
        which = "drop_when" if "drop_when" in r else "keep_when"
        cond = self.condition(r[which], "message", "filter", i, which)
        return FilterRule(cond, which == "drop_when", reason, self.line("filter", i))

    def target(self, route: Route, doc: Mapping[str, Any]) -> None:
        target = doc.get("target")
        if not isinstance(target, str):
            raise self.fail("a route needs a target dataset id (or passthrough: true)", "target")
        route.target, route.target_line = target, self.line("target")
        if self.datasets is not None:
            datasets = self.datasets
            route.dataset = self.guard(lambda: datasets.get(target), "target")

    def group_path(self, text: str, *key: str | int) -> Any:
        """Check a group path (`records`, `each.group`); for HL7 v2 return it compiled (the context of
        the relative paths read in it)."""
        self.guard(partial(paths.check_path, self.kind, text), *key)
        self.guard(partial(self.check_structure, text, "message"), *key)
        if self.kind != "hl7v2":
            return None
        from engine.hl7v2.path import compile_path

        return compile_path(text)

    def body(self, route: Route, doc: Mapping[str, Any]) -> None:
        known = dict(route.dataset.fields) if route.dataset is not None else None
        spec = doc.get("fields") or {}
        if not isinstance(spec, Mapping):
            raise self.fail("expected a mapping of target field → source", "fields")
        top: paths.Scope = "message"
        top_group = None
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
            top_group = self.group_path(records, "records")
            route.records, top = records, paths.group_scope(self.kind, records)
            self.group = top_group
            if when_text is not None:
                route.records_when = self.collect(
                    partial(self.condition, when_text, top, "records", "when"), "records", "when")
        self.group = top_group
        route.fields = tuple(self.fields(route, spec, known, ("fields",), top, prefix=""))
        each = doc.get("each") or {}
        if not isinstance(each, Mapping):
            raise self.fail("expected a mapping of array field → {group, fields}", "each")
        groups = []
        for name, gspec in each.items():
            group_map = self.collect(partial(self.each_group, route, name, gspec, known), "each", name)
            if group_map is not None:
                groups.append(group_map)
        self.group = top_group
        route.each = tuple(groups)
        env_spec = self.keys(doc.get("envelope") or {}, ENVELOPE_KEYS, "envelope")
        for key in ENVELOPE_KEYS:  # source_org is decided before `records` splits the message
            if key in env_spec:
                scope: paths.Scope = "message" if key == "source_org" else top
                self.group = None if key == "source_org" else top_group
                setattr(route, key, self.collect(
                    partial(self.field, route, key, env_spec[key], {}, ("envelope", key), scope),
                    "envelope", key))
        self.group = top_group
        if "operation" in doc:
            op = partial(self.field, route, "operation", doc["operation"], {}, ("operation",), top)
            route.operation = self.collect(op, "operation")
        if "identity" in doc:
            self.collect(partial(self.identity, route, doc["identity"], known), "identity")

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

    def each_group(self, route: Route, name: Any, gspec: Any, known: Mapping[str, Any] | None) -> EachMap:
        g = self.keys(gspec, EACH_KEYS, "each", name)
        info = self.check_field(name, known, "each", name)
        if info is not None and info.items is None:
            raise self.fail(f"{name} is not an array-of-rows field of {route.target}", "each", name)
        group = g.get("group")
        if not isinstance(group, str):
            raise self.fail("expected a group path such as OBX[*]", "each", name, "group")
        self.group = self.group_path(group, "each", name, "group")
        scope = paths.group_scope(self.kind, group)
        when = self.condition(g["when"], scope, "each", name, "when") if "when" in g else None
        rows = g.get("fields") or {}
        if not isinstance(rows, Mapping):
            raise self.fail("expected a mapping of row field → source", "each", name, "fields")
        row_known = dict(info.items) if info is not None and info.items is not None else None
        route.field_lines[name] = self.line("each", name)
        return EachMap(name, self.line("each", name), group, when,
                       tuple(self.fields(route, rows, row_known, ("each", name, "fields"), scope,
                                         prefix=f"{name}.")))

    def group_field(self, s: Mapping[str, Any], scope: paths.Scope, key: tuple[str | int, ...]
                    ) -> SourceReader:
        """`{group: OBX[*], when: <condition>, path: "5"}`: the value at `path` in the first item of the
        group (relative to the record: an OBR's own OBX) where `when` holds; every such value with
        `all: true`. For record fields that live in one of several segments (an exam report's
        findings and impression OBX). The group, `path` and `when` paths are checked like any other
        (`check_structure`), `path` and `when` in the context of the group."""
        group, path = s.get("group"), s.get("path")
        if not isinstance(path, str):
            raise self.fail("a group field reads a `path` (text) in each chosen item", *key)
        if not isinstance(group, str):
            raise self.fail("expected a group path such as OBX[*]", *key, "group")
        self.guard(partial(paths.check_path, self.kind, group, scope), *key, "group")
        self.guard(partial(self.check_structure, group, scope), *key, "group")
        gscope = paths.group_scope(self.kind, group)
        outer = self.group
        if self.kind == "hl7v2":
            from engine.hl7v2.path import compile_path

            # A segment group (OBX[*]) is the context of `path` and `when`; inside a relative field
            # group (`3[*]` of the record's segment) they are left unchecked (no context: check passes).
            self.group = compile_path(group) if group[:1].isalpha() else None
        try:
            read = self.guard(partial(self.getter, path, gscope), *key, "path")
            when = self.condition(s["when"], gscope, *key, "when") if "when" in s else None
        finally:
            self.group = outer
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
        """Each field compiled; a bad one is collected in `errors` and the next one is checked."""
        seen: dict[str, Value] = {}
        for name, fspec in spec.items():
            route.field_lines[prefix + str(name)] = self.line(*base, name)

            def one(name: Any = name, fspec: Any = fspec) -> FieldMap:
                self.check_field(name, known, *base, name)
                return self.field(route, name, fspec, seen, (*base, name), scope)

            fm = self.collect(one, *base, name)
            seen[name] = True
            if fm is not None:
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
        get: SourceReader | None
        src = sources[0]
        value = s[src]
        if "all" in s and not isinstance(s["all"], bool):
            raise self.fail(f"expected true or false, got {s['all']!r}", *key, "all")
        if ("group" in s or "when" in s) and src != "path":
            raise self.fail("group / when read `path` in each item of a group", *key)
        if "when" in s and "group" not in s:
            raise self.fail("when: needs a group (the items it chooses from)", *key, "when")
        if src == "path" and "group" in s:
            get = self.group_field(s, scope, key)
            text = f"{s['group']} {value}"
        elif src == "path":
            if s.get("all"):
                get_all = self.guard(lambda: self.all_getter(value, scope), *key, "path")
                get = lambda source: get_all(source) or None  # noqa: E731
            else:
                get = self.guard(lambda: self.getter(value, scope), *key, "path")
            text = str(value)
        elif src == "paths":
            if not isinstance(value, list) or not value:
                raise self.fail("expected a list of paths", *key, "paths")
            getters = tuple(
                self.group_field(self.keys(p, ("group", "when", "path"), *key, "paths", i), scope,
                                 (*key, "paths", i))
                if isinstance(p, Mapping)
                else self.guard(partial(self.getter, p, scope), *key, "paths", i)
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
        if self.kind == "hl7v2" and src in ("path", "paths") and not s.get("all"):
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
               on_unmapped: Callable[[str], None] = lambda table: None,
               loaded: list[Route] | None = None) -> Route:
    """Load and compile one route file; ConfigError names file:line for any problem.

    ``loaded`` receives the route, also a route that failed as far as it was read (id, match,
    destinations), so the config cross-checks still run on it (`engine.mapping.load_router`).
    """
    file = display_name(Path(path))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read route file: {exc.strerror}", file=file) from None
    doc, lines = load_yaml_with_lines(text, file=file)
    loader = _Loader(file, lines, datasets=datasets, tables=tables, on_unmapped=on_unmapped)
    try:
        route = loader.load(doc)
    finally:
        if loaded is not None and loader.partial is not None:
            loaded.append(loader.partial)
    return route


def load_routes(files: Iterable[str | Path], *, datasets: DatasetRegistry | None,
                tables: Mapping[str, CodeTable], on_unmapped: Callable[[str], None] = lambda t: None,
                loaded: list[Route] | None = None) -> list[Route]:
    """Load every route file; two routes with the same id are an error. Every problem of every file
    is raised together (`ConfigErrors`), so `yonglink validate` shows them all at once."""
    routes: list[Route] = []
    by_id: dict[str, Route] = {}
    errors: list[ConfigError] = []
    for f in files:
        try:
            route = load_route(f, datasets=datasets, tables=tables, on_unmapped=on_unmapped, loaded=loaded)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        except ConfigError as exc:
            errors.append(exc)
            continue
        if route.id in by_id:
            errors.append(ConfigError(f"route id {route.id!r} is also used by {by_id[route.id].file}",
                                      file=route.file, line=1, key="id"))
            continue
        by_id[route.id] = route
        routes.append(route)
    if errors:
        raise ConfigErrors(errors)
    return routes
