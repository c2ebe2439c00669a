"""Apply one compiled route to one source: filter, map fields and rows, fill the envelope, validate.

Per message this is plain attribute access and function calls: everything was compiled by
`engine.mapping.route`. All field problems of a record are collected (not just the first), so one
failed message tells the sender everything that is wrong with it; each reads
``<route file>:<line> <field>: <path> '<value>' <what is wrong>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.datasets.registry import DatasetRegistry
from engine.errors import FilteredMessage, MappingError
from engine.hl7v2.er7 import Er7Message
from engine.mapping import formats
from engine.mapping.expr import Cond
from engine.mapping.identity import Convention
from engine.mapping.model import FieldMap, Route, check_operation
from engine.mapping.transforms import Truncated
from engine.message_view import Source
from engine.types import RouteResult

MAX_VALUE_IN_ERROR = 40
"""Values quoted in errors are cut to this many characters (they may be free text)."""

OPERATION_BY_TRIGGER = {
    # HL7 v2.5.1 Table 0003 events that change or remove what an earlier message created.
    "A08": "update", "A31": "update", "A13": "update", "A12": "update", "A07": "update", "A06": "update",
    "A11": "delete", "A23": "delete", "A29": "delete", "A38": "delete", "A27": "delete",
    "S13": "update", "S14": "update", "S15": "update", "S17": "delete",
    "T04": "update", "T06": "update", "T08": "update", "T10": "update", "T11": "delete",
}
"""Trigger → envelope operation; every other trigger (A01, A04, A28, R01, S12, T02, V04 ...) is create."""
OPERATION_BY_METHOD = {"PUT": "update", "PATCH": "update", "DELETE": "delete", "POST": "create"}
"""FHIR Bundle entry.request.method → envelope operation."""


@dataclass
class Unit:
    """One thing to map: a parsed message, or one FHIR Bundle entry, plus what the envelope needs."""

    source: Source
    message_id: str
    received_at: float
    channel: str | None = None
    sending_facility: str | None = None
    """The stored message's sending facility (channel-provided), last resort for source_org."""
    fhir: dict[str, Any] | None = None
    """FHIR JSON of the resource (for meta.source / meta.lastUpdated)."""
    request_method: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    conventions: tuple[Convention, ...] = ()
    """Resident-ID conventions the message's channel declares (config `channels[].identity`)."""


@dataclass
class Outcome:
    """A route's result plus what data quality needs: the org, invalid fields."""

    result: RouteResult
    org: str
    dataset: str | None
    invalid: list[str]
    unrouted: str | None = None
    """The resource type of a FHIR resource no route takes (`engine.mapping.router.unrouted`)."""


def shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_VALUE_IN_ERROR:
        text = text[:MAX_VALUE_IN_ERROR] + "…"
    return f"'{text}'" if isinstance(value, str) else text


def apply_field(fm: FieldMap, source: Source, record: Mapping[str, Any], file: str,
                notes: list[str] | None = None, label: str | None = None) -> Any:
    """Read and transform one field; MappingError text is the full located message. A display text
    cut by `truncate` is named (`label`, else the field name) in `notes`."""
    try:
        get = fm.get
        value = get(source) if get is not None else fm.read(source, record)
    except MappingError as exc:  # a FHIRPath that fails at run time on this input
        raise MappingError(f"{file}:{fm.line} {fm.name}: {exc}", field=fm.name, path=fm.source_text,
                           route=file, line=fm.line) from None
    for step in fm.steps:
        before = value
        try:
            value = step(value, source)
            if value.__class__ is Truncated:
                value = value.value
                if notes is not None:
                    notes.append(label or fm.name)
        except MappingError as exc:
            what = exc.value if exc.value is not None else before
            src = "" if fm.source_text == "const" else f"{fm.source_text} "
            val = "" if what is None else f"{shown(what)} "
            raise MappingError(f"{file}:{fm.line} {fm.name}: {src}{val}{exc}", field=fm.name,
                               path=fm.source_text, value=what,
                route=file, line=fm.line) from None
    return value


def source_org(route: Route, unit: Unit, errors: list[str]) -> str:
    """Sending organisation: the route's `envelope.source_org`, else MSH-4 / MessageHeader.source.name,
    else FHIR meta.source, else the Organization the resource references, else the channel's facility."""
    if route.source_org is not None:
        try:
            value = apply_field(route.source_org, unit.source, {}, route.file)
            if value:
                return str(value)
        except MappingError as exc:
            errors.append(str(exc))
    org = unit.source.header.get("sending_facility") or ""  # FHIR: see engine.mapping.router._header
    return org or unit.sending_facility or ""


def record_time(route: Route, unit: Unit, source: Source, errors: list[str]) -> str:
    """DT15 of the record: `envelope.record_time`, else MSH-7 / meta.lastUpdated, else receipt time."""
    if route.record_time is not None:
        try:
            value = apply_field(route.record_time, source, {}, route.file)
            if value:
                return str(value)
        except MappingError as exc:
            errors.append(str(exc))
    raw: str | None = None
    if unit.source.kind == "hl7v2":
        raw = unit.source.get("MSH-7")
    elif unit.fhir is not None:
        raw = (unit.fhir.get("meta") or {}).get("lastUpdated") or unit.fhir.get("timestamp")
    if raw:
        try:
            return formats.to_dt15(raw)
        except MappingError:
            pass
    return datetime.fromtimestamp(unit.received_at, formats.BEIJING).strftime("%Y%m%dT%H%M%S")


def operation(route: Route, unit: Unit, source: Source, errors: list[str]) -> str:
    """create / update / delete: the route's `operation:`, else FHIR entry.request.method, else trigger."""
    if route.operation is not None:
        try:
            return check_operation(apply_field(route.operation, source, {}, route.file))
        except MappingError as exc:
            errors.append(f"{route.file}:{route.operation.line} operation: {exc}"
                          if not str(exc).startswith(route.file) else str(exc))
            return "create"
    if unit.request_method:
        return OPERATION_BY_METHOD.get(unit.request_method.upper(), "create")
    return OPERATION_BY_TRIGGER.get(unit.source.header.get("trigger_event", ""), "create")


def run_route(route: Route, unit: Unit, datasets: DatasetRegistry | None) -> list[Outcome]:
    """Map `unit` with `route`: records, a filtered reason, or every error found (one per record)."""
    source = unit.source
    dests = route.destinations
    org_errors: list[str] = []
    org = source_org(route, unit, org_errors)
    try:
        for rule in route.filters:
            if rule.cond(source, None) == rule.drop_when_true:
                raise FilteredMessage(rule.reason)
        items = [source] if route.records is None else source.children(route.records)
        if route.records_when is not None:
            items = [item for item in items if _holds(route.records_when, item)]
            if not items:
                return []  # no item of the group is this route's: it does not take the message
        if not items:
            raise FilteredMessage(f"no {route.records} in the message")
    except FilteredMessage as drop:
        return [Outcome(RouteResult(route_id=route.id, dataset=route.target, filtered=drop.reason,
                                    destinations=dests), org, route.target, [])]
    if route.validate_structure:
        from engine.mapping.structure import structure_problem

        problem = structure_problem(source.text if isinstance(source, Er7Message) else "")
        if problem is not None:
            error = f"{route.file}:{route.line_of('validate')} validate: structure: {problem}"
            return [Outcome(RouteResult(route_id=route.id, dataset=route.target, error=error,
                                        destinations=dests), org, route.target, [])]
    if route.passthrough:
        return [Outcome(RouteResult(route_id=route.id, passthrough=True, destinations=dests), org, None, [])]
    return [map_one(route, unit, item, org, list(org_errors), datasets) for item in items]


def _holds(cond: Cond, item: Source) -> bool:
    """A `records.when` condition; one that cannot be evaluated on this item does not select it."""
    try:
        return cond(item, None)
    except MappingError:
        return False


def map_one(route: Route, unit: Unit, source: Source, org: str, errors: list[str],
            datasets: DatasetRegistry | None) -> Outcome:
    """One record from `source` (the message, or one item of the route's `records` group)."""
    dests = route.destinations
    invalid: list[str] = []
    record: dict[str, Any] = {}
    truncated: list[str] = []
    file = route.file
    op = operation(route, unit, source, errors)
    clears = op == "update"
    for fm in route.fields:
        try:
            value = apply_field(fm, source, record, file, truncated)
        except MappingError as exc:
            errors.append(str(exc))
            invalid.append(fm.name)
            continue
        if value is not None and value != "" and value != []:
            record[fm.name] = value
        elif clears and value is None and fm.is_null is not None and fm.is_null(source):
            record[fm.name] = None  # HL7 "" in an update (A08, A31): clear the field (HL7 v2.5.1 §2.5.3)
    found = None
    if route.identity is not None:
        found = route.identity.find(unit.source, unit.channel, unit.conventions)
        if found.error is not None:
            errors.append(found.error)
            invalid.append("id_number")
        for name, text in found.fields.items():
            record.setdefault(name, text)
        patient = record.get("patient_id")
        if isinstance(patient, str) and patient.strip().upper() in found.documents:
            del record["patient_id"]  # never an identity document in the hospital's patient id
    for each in route.each:
        rows = []
        for i, child in enumerate(source.children(each.group)):
            if each.when is not None and not each.when(child, None):
                continue
            row: dict[str, Any] = {}
            for fm in each.fields:
                try:
                    value = apply_field(fm, child, row, file, truncated, f"{each.name}[].{fm.name}")
                except MappingError as exc:
                    errors.append(str(exc).replace(f" {fm.name}: ", f" {each.name}[{i}].{fm.name}: ", 1))
                    invalid.append(f"{each.name}[].{fm.name}")
                    continue
                if value is not None and value != "" and value != []:
                    row[fm.name] = value
            rows.append(row)
        if rows:
            record[each.name] = rows
    if not org:
        errors.append(f"{file}:{route.target_line} envelope.source_org: no sending organisation "
                      "(MSH-4, MessageHeader.source.name, meta.source); set envelope.source_org")
    dataset = route.dataset
    envelope: dict[str, Any] = {
        "dataset": route.target, "dataset_version": dataset.version if dataset else "",
        "source_org": org, "source_message_id": unit.message_id,
        "record_time": record_time(route, unit, source, errors),
        "operation": op,
    }
    if found is not None:
        if found.id_source is not None:
            envelope["id_source"] = found.id_source
        if found.dropped:
            envelope["dropped"] = list(found.dropped)
    if truncated:
        envelope["truncated"] = sorted(set(truncated))
    full = {"envelope": envelope, **record}
    if not errors and datasets is not None and route.target is not None:
        cleared = [k for k, v in record.items() if v is None]
        checked = {k: v for k, v in full.items() if v is not None} if cleared else full
        for issue in datasets.validate(route.target, checked):
            name = _field_of(issue.path)
            errors.append(f"{file}:{route.line_of(name.replace('[].', '.'))} {name or '(record)'}: "
                          f"{issue.message}")
            invalid.append(name)
    if errors:
        return Outcome(RouteResult(route_id=route.id, dataset=route.target, error="; ".join(errors),
                                   destinations=dests), org, route.target, invalid)
    return Outcome(RouteResult(route_id=route.id, dataset=route.target, record=full, destinations=dests),
                   org, route.target, [])


def _field_of(pointer: str) -> str:
    """`/results/3/unit` → `results[].unit`; `/envelope/source_org` → `envelope.source_org`."""
    parts = [p for p in pointer.split("/") if p]
    out = ""
    for p in parts:
        if p.isdigit():
            out += "[]"
        else:
            out += ("." if out else "") + p
    return out
