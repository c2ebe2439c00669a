"""Data-quality counts per sending organisation, for the platform's monthly data-quality reports.

Per organisation (MSH-4 / FHIR MessageHeader.source.name or meta.source) and dataset: records
mapped, failed and filtered, and per dataset field how often it was *missing* from a mapped record,
how often it was *invalid* (the field's mapping failed, the schema rejected it, or a route policy
dropped its invalid value: ``envelope.dropped``) and how often a display text was *truncated* at its
limit (``envelope.truncated``; the key appears only for fields that were cut).

Two feeds, one counter class:

* the running engine: the Router observes every result as it maps (`Router.quality_snapshot()`,
  shown under ``quality`` in ``/status``; counts since the engine started);
* ``yonglink quality``: recomputes the same counts from the store's ``results`` table (joined with
  ``messages``), so it works without a running engine and over any period (``--since``). The store
  is the durable truth; nothing extra is persisted. Invalid fields are read back from the error text,
  whose form ``<file>:<line> <field>: ...`` is fixed by engine/mapping/mapper.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from engine.datasets.registry import FieldInfo
from engine.store.cipher import PLAIN, PayloadCipher
from engine.store.connection import Connection
from engine.store.messages import NO_ROUTE, record_of

UNKNOWN_ORG = "(unknown)"
_FIELD_IN_ERROR = re.compile(r"(?:^|; )\S+:\d+ ([A-Za-z_][\w.\[\]]*): ")
_ROW_INDEX = re.compile(r"\[\d+\]")
UNROUTED_REASON = re.compile(r"no route takes (?:Bundle\.entry\[\d+\] \()?([A-Za-z]+)\)?(?: from (.+))?$")
"""The filtered reason of an ``(unrouted)`` result (engine/mapping/router.py): resource type, sender."""
MAX_UNROUTED_KEYS = 200
"""Distinct organisations, and distinct types per organisation, counted apart as unrouted."""
OTHER_KEY = "(other)"


def invalid_fields(error: str) -> list[str]:
    """Field names named by a mapper error text (``results[3].unit`` → ``results[].unit``)."""
    return [_ROW_INDEX.sub("[]", m.group(1)) for m in _FIELD_IN_ERROR.finditer(error)]


Plan = tuple[tuple[str, tuple[tuple[str, str], ...] | None], ...]
"""Per dataset field: its name and, for array-of-rows fields, (row field, ``name[].row field``) pairs."""


def missing_plan(fields: Mapping[str, FieldInfo]) -> Plan:
    """What `missing_fields` checks, with the dotted row names built once instead of per record."""
    return tuple((name, tuple((r, f"{name}[].{r}") for r in info.items) if info.items is not None else None)
                 for name, info in fields.items())


def iter_missing(record: Mapping[str, Any], plan: Plan) -> Iterator[str]:
    """Dataset fields absent from a mapped record (row fields as ``results[].unit``, once per row)."""
    for name, rows in plan:
        value = record.get(name)
        if value is None:
            yield name
        elif rows is not None and isinstance(value, list):
            for row in value:
                if isinstance(row, Mapping):
                    for r, dotted in rows:
                        if r not in row:
                            yield dotted


def missing_fields(record: Mapping[str, Any], fields: Mapping[str, FieldInfo]) -> list[str]:
    """Dataset fields absent from a mapped record (row fields as ``results[].unit``, once per row)."""
    return list(iter_missing(record, missing_plan(fields)))


class QualityCounter:
    """Counts by organisation → dataset: mapped / failed / filtered and per-field missing / invalid."""

    def __init__(self, fields: Mapping[str, Mapping[str, FieldInfo]] | None = None) -> None:
        self.fields = fields or {}
        self.since = time.time()
        self.orgs: dict[str, dict[str, dict[str, Any]]] = {}
        self.unrouted: dict[str, dict[str, int]] = {}
        """Organisation → FHIR resource type → resources no route took (Bundle entries included)."""
        self._plans: dict[str, Plan] = {}

    def _slot(self, org: str | None, dataset: str | None) -> dict[str, Any]:
        by_ds = self.orgs.setdefault(org or UNKNOWN_ORG, {})
        slot = by_ds.get(dataset or "(none)")
        if slot is None:
            slot = by_ds[dataset or "(none)"] = {"mapped": 0, "failed": 0, "filtered": 0, "fields": {}}
        return slot

    def _field(self, slot: dict[str, Any], name: str, what: str) -> None:
        counts = slot["fields"].setdefault(name, {"missing": 0, "invalid": 0})
        counts[what] = counts.get(what, 0) + 1

    def _plan(self, dataset: str) -> Plan:
        plan = self._plans.get(dataset)
        if plan is None:
            plan = self._plans[dataset] = missing_plan(self.fields.get(dataset, {}))
        return plan

    def observe(self, org: str | None, dataset: str | None, *, record: Mapping[str, Any] | None = None,
                error: str | None = None, filtered: bool = False,
                invalid: Iterable[str] | None = None) -> None:
        """Count one route result."""
        slot = self._slot(org, dataset)
        if record is not None:
            slot["mapped"] += 1
            counts = slot["fields"]
            for name in iter_missing(record, self._plan(dataset or "")):
                field = counts.get(name)
                if field is None:
                    field = counts[name] = {"missing": 0, "invalid": 0}
                field["missing"] += 1
            envelope = record.get("envelope")
            if isinstance(envelope, Mapping):
                # A value a route policy left out (an invalid resident ID with `on_invalid: drop`) is
                # invalid data even though the record was kept; a display text cut at its limit is
                # counted apart (engine/mapping/identity.py, transform `truncate`).
                for name in envelope.get("dropped") or ():
                    self._field(slot, name, "invalid")
                for name in envelope.get("truncated") or ():
                    self._field(slot, name, "truncated")
        elif error is not None:
            slot["failed"] += 1
            for name in (invalid if invalid is not None else invalid_fields(error)):
                self._field(slot, name, "invalid")
        elif filtered:
            slot["filtered"] += 1

    def observe_unrouted(self, org: str | None, resource_type: str) -> None:
        """Count one FHIR resource, or one HL7 v2 message (by message type), that no route took.

        Organisations and types come from the wire: at most `MAX_UNROUTED_KEYS` of each are kept apart,
        the rest are counted under `(other)`, so a sender inventing codes cannot grow this without end."""
        key = org or UNKNOWN_ORG
        if key not in self.unrouted and len(self.unrouted) >= MAX_UNROUTED_KEYS:
            key = OTHER_KEY
        by_type = self.unrouted.setdefault(key, {})
        if resource_type not in by_type and len(by_type) >= MAX_UNROUTED_KEYS:
            resource_type = OTHER_KEY
        by_type[resource_type] = by_type.get(resource_type, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-able counts: {since, organisations: {org: {dataset: {mapped, failed, filtered, fields}}},
        unrouted: {org: {resource type: count}}}."""
        return {"since": self.since,
                "unrouted": {org: dict(sorted(by.items())) for org, by in sorted(self.unrouted.items())},
                "organisations": {org: {ds: {**slot, "fields": {k: dict(v) for k, v in
                                                                 sorted(slot["fields"].items())}}
                                        for ds, slot in sorted(by.items())}
                                  for org, by in sorted(self.orgs.items())}}


def dataset_fields(registry: Any) -> dict[str, dict[str, FieldInfo]]:
    """Dataset id → fields, from a DatasetRegistry (None → {})."""
    if registry is None:
        return {}
    return {ds: dict(registry.fields(ds)) for ds in registry.datasets()}


def from_store(conn: Connection, fields: Mapping[str, Mapping[str, FieldInfo]], *,
               since: float | None = None, channel_orgs: Mapping[str, str] | None = None,
               cipher: PayloadCipher = PLAIN) -> QualityCounter:
    """Recompute the counts from the `results` and `messages` tables (for ``yonglink quality``).

    ``channel_orgs`` (channel → its config `source_org`) attributes failures of messages that name no
    sender as the router did."""
    counter = QualityCounter(fields)
    counter.since = since or 0.0
    orgs = channel_orgs or {}
    rows = conn.execute(
        "SELECT m.sending_facility, r.dataset, r.record, r.filtered, r.error, r.route_id, m.channel"
        " FROM results r JOIN messages m ON m.id = r.message_id WHERE m.received_at >= ?", (since or 0.0,))
    for facility, dataset, record_text, filtered, error, route_id, channel in rows:
        facility = facility or orgs.get(channel) or None
        if route_id.startswith("(unrouted)"):  # engine.mapping.router.unrouted
            found = UNROUTED_REASON.search(filtered or "")
            rtype, org = (found.group(1), found.group(2)) if found else ("(unknown)", None)
            counter.observe_unrouted(org or facility, rtype)
            continue
        record = record_of(record_text, cipher)  # decrypted when the store seals records
        org = facility
        if record is not None:
            org = (record.get("envelope") or {}).get("source_org") or facility
        counter.observe(org, dataset, record=record, error=error, filtered=filtered is not None)
    for facility, channel, mtype, ctype in conn.execute(  # messages no route took (no result rows)
            "SELECT sending_facility, channel, message_type, content_type FROM messages"
            " WHERE state = 'filtered' AND error = ? AND received_at >= ?", (NO_ROUTE, since or 0.0)):
        counter.observe_unrouted(facility or orgs.get(channel) or None, mtype or ctype)
    return counter


def table(snapshot: Mapping[str, Any], *, top_fields: int = 5) -> str:
    """A text table of a snapshot: one line per organisation and dataset, then its worst fields."""
    lines = [f"{'ORGANISATION':<20} {'DATASET':<26} {'MAPPED':>7} {'FAILED':>7} {'FILTERED':>8}  "
             "WORST FIELDS (missing/invalid)"]
    for org, by_ds in snapshot.get("organisations", {}).items():
        for ds, slot in by_ds.items():
            worst = sorted(slot["fields"].items(),
                           key=lambda kv: (-kv[1]["invalid"], -kv[1]["missing"], kv[0]))
            shown = ", ".join(f"{k} {v['missing']}/{v['invalid']}" for k, v in worst[:top_fields])
            lines.append(f"{org:<20} {ds:<26} {slot['mapped']:>7} {slot['failed']:>7} {slot['filtered']:>8}  "
                         f"{shown}")
    if len(lines) == 1:
        lines.append("(no results)")
    for org, by_type in snapshot.get("unrouted", {}).items():
        listed = ", ".join(f"{rtype} {n}" for rtype, n in by_type.items())
        lines.append(f"{org:<20} {'(taken by no route)':<26} {listed}")
    return "\n".join(lines)


__all__ = [
    "QualityCounter",
    "dataset_fields",
    "from_store",
    "invalid_fields",
    "missing_fields",
    "table",
]
