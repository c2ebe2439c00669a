"""Dataset schema registry: the Ningbo dataset records yonglink emits, and how to check them.

Each `schemas/ningbo/<area>/<dataset>.schema.json` (JSON Schema 2020-12) describes one record: a flat
object with an `envelope` (shared `envelope.schema.json`) plus fields named in snake_case English, each
carrying its WS 363 data element id in `x-de` (and `x-cv` for the WS 364 / GB value domain of coded
fields). Destinations may want records keyed by DE id instead (`keys: de`); the registry derives that
schema once per dataset by renaming properties, so both forms validate against the same rules.

Validators are compiled once per dataset at load time: measured here ~2,400 person / ~1,500 lab_report
records/s per core, against ~50/s when the schema is checked and the validator built per call. A valid
record is first checked by fastjsonschema's generated code (engine/datasets/fast_validation.py,
~84,000 person/s);
jsonschema runs only to explain an invalid one.
Issue messages never quote the record's values: records hold patient data.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as JsonSchemaError
from referencing import Registry, Resource

from engine.datasets.fast_validation import FastCheck, compile_fast
from engine.errors import ConfigError

Keys = Literal["field", "de"]
"""How a record is keyed: by English field name (`field`, the default) or by WS 363 DE id (`de`)."""

ENVELOPE = "envelope"
"""The one property that is not a data element and keeps its name in both key styles."""


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in a record: JSON Pointer to the field (`/results/0/unit`) and a value-free message."""

    path: str
    message: str


@dataclass(frozen=True)
class FieldInfo:
    """What a dataset field is: Chinese title, DE id, value domain, JSON type and constraints."""

    name: str
    title: str
    de: str
    type: str
    required: bool = False
    cv: str | None = None
    format: str | None = None
    enum: tuple[str, ...] | None = None
    labels: Mapping[str, str] | None = None
    """Code → meaning for coded fields (`x-labels`), e.g. {"1": "男性", "2": "女性", ...}."""
    max_length: int | None = None
    pattern: str | None = None
    comment: str | None = None
    items: Mapping[str, FieldInfo] | None = None
    """Row fields, for array-of-rows fields such as lab_report `results`."""


@dataclass(frozen=True)
class Dataset:
    """One loaded dataset: its schemas (field- and DE-keyed), compiled validators and field table."""

    id: str
    version: str
    title: str
    area: str
    file: str
    schema: Mapping[str, Any]
    de_schema: Mapping[str, Any]
    fields: Mapping[str, FieldInfo]
    validator: Draft202012Validator
    de_validator: Draft202012Validator
    fast: FastCheck | None = None
    de_fast: FastCheck | None = None


class DatasetRegistry:
    """All datasets under a schema directory; build with `DatasetRegistry.load(dir)`."""

    def __init__(self, datasets: Mapping[str, Dataset]) -> None:
        self._datasets = dict(datasets)

    @classmethod
    def load(cls, schemas_dir: str | Path) -> DatasetRegistry:
        """Read every `*.schema.json` below `schemas_dir` once; ConfigError names the bad file."""
        root = Path(schemas_dir)
        if not root.is_dir():
            raise ConfigError("schema directory does not exist", file=str(root))
        docs = {path: _read_json(path) for path in sorted(root.rglob("*.schema.json"))}
        resources = []
        for path, doc in docs.items():
            _check_schema(doc, path)
            if "$id" in doc:
                resources.append((str(doc["$id"]), Resource.from_contents(doc)))
        registry: Registry[Any] = Registry().with_resources(resources)
        documents = {str(doc["$id"]): doc for doc in docs.values() if "$id" in doc}
        datasets: dict[str, Dataset] = {}
        for path, doc in docs.items():
            if "x-dataset" not in doc:
                continue  # a shared part such as envelope.schema.json
            ds = _build(path, doc, registry, documents)
            if ds.id in datasets:
                raise ConfigError(f"dataset {ds.id!r} is also defined in {datasets[ds.id].file}",
                                  file=str(path))
            datasets[ds.id] = ds
        return cls(datasets)

    def datasets(self) -> list[str]:
        """Known dataset ids, sorted."""
        return sorted(self._datasets)

    def get(self, dataset_id: str) -> Dataset:
        """The dataset, or ConfigError listing the known ids."""
        try:
            return self._datasets[dataset_id]
        except KeyError:
            known = ", ".join(self.datasets()) or "(none loaded)"
            raise ConfigError(f"unknown dataset {dataset_id!r}; known datasets: {known}") from None

    def fields(self, dataset_id: str) -> Mapping[str, FieldInfo]:
        """Field name → FieldInfo (envelope excluded), for checking routes' target fields."""
        return self.get(dataset_id).fields

    def validate(self, dataset_id: str, record: Any, *, keys: Keys = "field") -> list[ValidationIssue]:
        """All problems in `record` (empty list when valid), sorted by path."""
        ds = self.get(dataset_id)
        if keys not in ("field", "de"):
            raise ValueError(f"keys must be 'field' or 'de', not {keys!r}")
        fast = ds.fast if keys == "field" else ds.de_fast
        if fast is not None and fast(record):
            return []
        validator = ds.validator if keys == "field" else ds.de_validator
        issues = [_issue(err) for err in validator.iter_errors(record)]
        return sorted(issues, key=lambda i: (i.path, i.message))

    def to_de_keys(self, dataset_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Rename a field-keyed record's keys to DE ids (row fields too); unknown keys and the envelope
        keep their names."""
        return _rekey(record, self.get(dataset_id).fields, to_de=True)

    def from_de_keys(self, dataset_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Inverse of `to_de_keys`."""
        return _rekey(record, self.get(dataset_id).fields, to_de=False)


_CHECKED: set[str] = set()
"""Schema texts already checked against the 2020-12 metaschema in this process (~0.13 s each)."""


def _check_schema(doc: Mapping[str, Any], path: Path) -> None:
    key = json.dumps(doc, sort_keys=True, ensure_ascii=False)
    if key in _CHECKED:
        return
    try:
        Draft202012Validator.check_schema(doc)
    except SchemaError as exc:
        raise ConfigError(f"not a valid 2020-12 schema: {exc.message}", file=str(path)) from exc
    _CHECKED.add(key)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", file=str(path), line=exc.lineno) from exc
    if not isinstance(doc, dict):
        raise ConfigError("a schema must be a JSON object", file=str(path))
    return doc


def _build(path: Path, doc: dict[str, Any], registry: Registry[Any],
           documents: Mapping[str, Mapping[str, Any]]) -> Dataset:
    file = str(path)
    fields = _fields(doc, file, "")
    de_schema = _de_schema(doc, fields)
    checker = Draft202012Validator.FORMAT_CHECKER
    return Dataset(
        id=str(doc["x-dataset"]), version=str(doc.get("x-dataset-version", "")),
        title=str(doc.get("title", "")), area=str(doc.get("x-area", "")), file=file, schema=doc,
        de_schema=de_schema, fields=fields,
        validator=Draft202012Validator(doc, registry=registry, format_checker=checker),
        de_validator=Draft202012Validator(de_schema, registry=registry, format_checker=checker),
        fast=compile_fast(doc, documents), de_fast=compile_fast(de_schema, documents),
    )


def _fields(obj: Mapping[str, Any], file: str, prefix: str) -> dict[str, FieldInfo]:
    """FieldInfo per property of an object schema; ConfigError if a field lacks title/x-de or two
    fields of one object share a DE id (DE-keyed records would collide)."""
    required = set(obj.get("required", []))
    out: dict[str, FieldInfo] = {}
    seen: dict[str, str] = {}
    for name, prop in obj.get("properties", {}).items():
        if not prefix and name == ENVELOPE:
            continue
        where = f"{prefix}{name}"
        if not prop.get("title") or not prop.get("x-de"):
            raise ConfigError("every field needs `title` and `x-de`", file=file, key=where)
        de = str(prop["x-de"])
        if de in seen:
            raise ConfigError(f"x-de {de} is also used by {seen[de]}", file=file, key=where)
        seen[de] = where
        items = prop.get("items", {})
        enum = prop.get("enum")
        out[name] = FieldInfo(
            name=name, title=str(prop["title"]), de=de, type=str(prop.get("type", "")),
            required=name in required,
            cv=prop.get("x-cv"), format=prop.get("x-format"), enum=tuple(enum) if enum else None,
            labels=prop.get("x-labels"),
            max_length=prop.get("maxLength"), pattern=prop.get("pattern"), comment=prop.get("$comment"),
            items=_fields(items, file, f"{where}[].") if "properties" in items else None,
        )
    return out


def _de_schema(doc: Mapping[str, Any], fields: Mapping[str, FieldInfo]) -> dict[str, Any]:
    """The DE-keyed twin of a dataset schema: same rules, properties renamed to their x-de."""
    de = copy.deepcopy(dict(doc))
    de["$id"] = str(doc.get("$id", "")).replace(".schema.json", ".de.schema.json")
    _rename(de, fields)
    return de


def _rename(obj: dict[str, Any], fields: Mapping[str, FieldInfo]) -> None:
    names = {name: info.de for name, info in fields.items()}

    def ren(name: str) -> str:
        return names.get(name, name)

    props = obj.get("properties", {})
    for name, info in fields.items():
        if info.items is not None:
            _rename(props[name]["items"], info.items)
    obj["properties"] = {ren(k): v for k, v in props.items()}
    _rename_required(obj, ren)


def _rename_required(obj: dict[str, Any], ren: Callable[[str], str]) -> None:
    """Rename field names in `required` / `dependentRequired`, also inside anyOf/allOf/oneOf branches."""
    if "required" in obj:
        obj["required"] = [ren(n) for n in obj["required"]]
    if "dependentRequired" in obj:
        obj["dependentRequired"] = {ren(k): [ren(n) for n in v] for k, v in obj["dependentRequired"].items()}
    for keyword in ("anyOf", "allOf", "oneOf"):
        for sub in obj.get(keyword, []):
            _rename_required(sub, ren)


def _rekey(record: Mapping[str, Any], fields: Mapping[str, FieldInfo], *, to_de: bool) -> dict[str, Any]:
    by_key = {(info.name if to_de else info.de): info for info in fields.values()}
    out: dict[str, Any] = {}
    for key, value in record.items():
        info = by_key.get(key)
        if info is None:
            out[key] = value
            continue
        if info.items is not None and isinstance(value, list):
            value = [_rekey(r, info.items, to_de=to_de) if isinstance(r, Mapping) else r for r in value]
        out[info.de if to_de else info.name] = value
    return out


def _issue(err: JsonSchemaError) -> ValidationIssue:
    """A ValidationIssue whose message describes the rule broken, never the offending value."""
    parts = [str(p) for p in err.absolute_path]
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    kind, rule = err.validator, err.validator_value
    if kind == "required":
        missing = [n for n in rule if isinstance(err.instance, Mapping) and n not in err.instance]
        parts.append(str(missing[0]) if missing else "")
        message = "is required"
    elif kind == "additionalProperties":
        extra = sorted(k for k in err.instance if k not in schema.get("properties", {}))
        message = f"unknown field(s): {', '.join(extra)}"
    elif kind == "pattern":
        message = f"does not match format {schema.get('x-format') or rule}"
    elif kind == "enum":
        allowed = ", ".join(map(str, rule))
        message = f"not a code of {schema.get('x-cv', 'the allowed list')} (allowed: {allowed})"
    elif kind == "dependentRequired":
        pairs = [(p, d) for p, deps in rule.items() for d in deps
                 if f"{d!r} is a dependency of {p!r}" == err.message]
        parts.append(str(pairs[0][1]) if pairs else "")
        message = f"is required when {pairs[0][0]} is given" if pairs else err.message  # field names only
    elif kind == "anyOf" and all(set(sub) == {"required"} for sub in rule):
        message = "needs one of: " + " | ".join("+".join(sub["required"]) for sub in rule)
    else:
        message = _SIMPLE.get(str(kind), "breaks rule {kind}").format(kind=kind, rule=rule)
    return ValidationIssue(path="/" + "/".join(parts) if parts else "", message=message)


_SIMPLE = {
    "maxLength": "longer than {rule} characters",
    "minLength": "shorter than {rule} character(s)",
    "type": "must be of type {rule}",
    "const": "must be {rule!r}",
    "minimum": "below the minimum {rule}",
    "maximum": "above the maximum {rule}",
    "minItems": "needs at least {rule} item(s)",
}


def iter_fields(fields: Mapping[str, FieldInfo], prefix: str = "") -> Iterable[tuple[str, FieldInfo]]:
    """(dotted name, FieldInfo) for every field, row fields as `results[].unit`."""
    for name, info in fields.items():
        yield f"{prefix}{name}", info
        if info.items is not None:
            yield from iter_fields(info.items, f"{prefix}{name}[].")


def markdown(registry: DatasetRegistry) -> str:
    """docs/datasets.md tables: one per dataset (field, title, DE, format, value domain, required, notes)."""
    lines: list[str] = []
    for dataset_id in registry.datasets():
        ds = registry.get(dataset_id)
        lines += [f"### `{ds.id}` — {ds.title} ({ds.area}, v{ds.version})", "",
                  str(ds.schema.get("description", "")), "", f"Schema: `{ds.schema.get('$id', '')}`", "",
                  "| field | title | DE | format | value domain | required | notes |",
                  "|---|---|---|---|---|---|---|"]
        one_of = _one_of_groups(ds.schema)
        for name, info in iter_fields(ds.fields):
            required = "yes" if info.required else ""
            for groups in one_of:
                if any(name in group for group in groups):
                    required = "one of " + " / ".join("+".join(g) for g in groups)
            domain = info.cv or ""
            if info.labels and len(info.labels) <= 10:
                domain += ": " + ", ".join(f"{k} {v}" for k, v in info.labels.items())
            elif info.enum:
                domain += f" ({len(info.enum)} codes)"
            fmt = info.format or info.type
            cells = [f"`{name}`", info.title, f"`{info.de}`", fmt, domain, required, info.comment or ""]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _one_of_groups(schema: Mapping[str, Any]) -> list[list[list[str]]]:
    """The "needs one of" field groups of a dataset (anyOf of plain `required`, top level or in allOf)."""
    any_ofs = [schema.get("anyOf", []), *(sub.get("anyOf", []) for sub in schema.get("allOf", []))]
    return [[b["required"] for b in a] for a in any_ofs if a and all(set(b) == {"required"} for b in a)]
