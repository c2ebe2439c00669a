"""The monthly data-quality bulletin (数据质量月度通报), computed from the store.

Why from the store: the platform publishes one bulletin per sending organisation and month, and must be
able to recompute any past month after restarts or a corrected route. The `messages` and `results` tables
are the durable truth; nothing else is persisted (see engine/mapping/quality.py for the live counters).

Figures, per organisation (codes folded case-insensitively: `nbdyyy` and `NBDYYY` are one sender) and per
dataset, for the calendar month in Beijing time (UTC+8, the platform's time zone):

* **messages** (message level, by MSH-4 or, for FHIR, the records' `source_org`): received, rejected at
  parse (`rejected`), unrouted (`filtered` with the pipeline's "no route matched"), filtered by a route,
  mapped, failed, and still pending (`received`).
* **records** (result level, per dataset): mapped and failed records, filtered results.
* **completeness of required fields**: over every record (mapped or failed) × the dataset's required
  fields, the share present. A mapped record has all of them (the schema check enforces it); a failed one
  lacks those its error names as required ("is required but empty", "is a required property").
* **completeness of optional fields that the route maps**: over mapped records × the optional fields that
  the route which produced the record maps (a field no route maps is the route's choice, not the sender's
  gap, so it is not counted), the share present.
* **validity**: invalid values by kind, read from the mapper's error texts (`<file>:<line> <field>: ...`,
  fixed by engine/mapping/mapper.py): codes outside their value domain or code table, bad dates, resident
  IDs failing the GB 11643 check, other; and the share of records without any invalid value.
* **timeliness**: delay from the record's time (`envelope.record_time`: the route's event time, else
  MSH-7 / meta.lastUpdated) to receipt, p50 and p95 in hours (nearest-rank), and the share within 24 h.
* **duplicates**: mapped records whose content (without the envelope) repeats an earlier record of the
  same organisation and dataset in the month — the same data sent twice under different message ids.
* **worst fields**: the five fields with most missing + invalid values, with up to three example message
  ids (ids only: the bulletin carries no patient data).

The score that ranks organisations (0–100, documented in docs/quality.md) weighs validity 35 %,
completeness 30 % (required twice as much as optional), processing success 20 % (mapped messages out of
mapped + failed + rejected + unrouted) and timeliness 15 % (records within 24 h).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from engine.mapping.quality import UNROUTED_REASON
from engine.mapping.router import UNROUTED
from engine.quality.figures import (
    UNKNOWN_ORG,
    WEIGHTS,
    Tally,
    error_parts,
    fold_org,
    month_bounds,
    parse_record_time,
    previous_month,
    ratio,
)
from engine.store.cipher import PLAIN, PayloadCipher
from engine.store.connection import Connection
from engine.store.messages import NO_ROUTE, record_of
from engine.types import MessageState


@dataclass(frozen=True, slots=True)
class RouteFields:
    """What one route maps: its dataset and the top-level field names it fills."""

    dataset: str
    fields: frozenset[str]


@dataclass(frozen=True, slots=True)
class DatasetFields:
    """A dataset's required and optional top-level fields (from schemas/ningbo), and its title."""

    title: str
    required: frozenset[str]
    optional: frozenset[str]


class BulletinBuilder:
    """Feeds messages and results of one period into per-organisation tallies, then the report."""

    def __init__(self, datasets: Mapping[str, DatasetFields], routes: Mapping[str, RouteFields]) -> None:
        self.datasets = datasets
        self.routes = routes
        self.messages: dict[str, dict[str, int]] = {}
        self.by_dataset: dict[str, dict[str, Tally]] = {}
        self.whole: dict[str, Tally] = {}
        self._seen: dict[tuple[str, str], set[bytes]] = {}
        self.unrouted: dict[str, dict[str, int]] = {}
        """Organisation → message type (HL7 v2) or resource type (FHIR) → what no route took."""

    def _tallies(self, org: str, dataset: str) -> tuple[Tally, Tally]:
        per = self.by_dataset.setdefault(org, {})
        if dataset not in per:
            per[dataset] = Tally()
        if org not in self.whole:
            self.whole[org] = Tally()
        return per[dataset], self.whole[org]

    def unrouted_type(self, org: str, kind: str) -> None:
        """Count one message (by message type) or FHIR resource (by resource type) no route took."""
        by_type = self.unrouted.setdefault(org, {})
        by_type[kind] = by_type.get(kind, 0) + 1

    def message(self, org: str, state: str, error: str | None, message_type: str | None = None) -> None:
        """Count one stored message of the period."""
        counts = self.messages.setdefault(
            org,
            {
                "received": 0,
                "rejected": 0,
                "unrouted": 0,
                "filtered": 0,
                "mapped": 0,
                "failed": 0,
                "pending": 0,
            },
        )
        counts["received"] += 1
        if state == MessageState.FILTERED:
            counts["unrouted" if error == NO_ROUTE else "filtered"] += 1
            if error == NO_ROUTE:
                self.unrouted_type(org, message_type or "(unknown)")
        elif state == MessageState.RECEIVED:
            counts["pending"] += 1
        elif state in (MessageState.REJECTED, MessageState.MAPPED, MessageState.FAILED):
            counts[str(state)] += 1

    def result(
        self,
        org: str,
        message_id: str,
        received_at: float,
        route_id: str,
        dataset: str | None,
        record: Mapping[str, Any] | None,
        filtered: bool,
        error: str | None,
    ) -> None:
        """Count one route result of the period."""
        if record is None and not filtered and not error:
            return  # a pass-through result: forwarded as received, no dataset record to judge
        name = dataset or "(none)"
        tallies = self._tallies(org, name)
        info = self.datasets.get(name)
        if filtered:
            for t in tallies:
                t.filtered += 1
            return
        required = info.required if info else frozenset()
        if record is not None:
            mapped_optional = (
                self.routes[route_id].fields & info.optional
                if info and route_id in self.routes
                else frozenset()
            )
            present_optional = [f for f in mapped_optional if record.get(f) not in (None, "", [])]
            envelope = record.get("envelope") or {}
            recorded = parse_record_time(envelope.get("record_time"))
            content = hashlib.sha256(
                orjson.dumps(
                    {k: v for k, v in record.items() if k != "envelope"}, option=orjson.OPT_SORT_KEYS
                )
            ).digest()
            seen = self._seen.setdefault((org, name), set())
            duplicate = content in seen
            seen.add(content)
            for t in tallies:
                t.mapped += 1
                t.required_total += len(required)
                t.required_present += len(required)
                t.optional_total += len(mapped_optional)
                t.optional_present += len(present_optional)
                if recorded is not None:
                    t.delays.append(max(0.0, (received_at - recorded) / 3600))
                t.duplicates += duplicate
            for f in mapped_optional:
                if f not in present_optional:
                    for t in tallies:
                        t.field(f"{name}.{f}").hit(message_id, invalid=False)
            return
        parts = error_parts(error or "")
        missing_required = {f for f, kind in parts if kind == "required" and f in required}
        invalid = [(f, kind) for f, kind in parts if kind != "required"]
        for t in tallies:
            t.failed += 1
            t.required_total += len(required)
            t.required_present += len(required) - len(missing_required)
            t.records_with_invalid += bool(invalid)
            for _, kind in invalid:
                t.invalid[kind] += 1
            for f, _ in parts:
                t.field(f"{name}.{f}").hit(message_id, invalid=(f, "required") not in parts)

    def organisations(self) -> list[str]:
        return sorted(set(self.messages) | set(self.whole))

    def report(self) -> dict[str, dict[str, Any]]:
        """Organisation → its figures (messages, whole, per dataset, score components and score)."""
        out: dict[str, dict[str, Any]] = {}
        for org in self.organisations():
            msgs = self.messages.get(org) or {
                "received": 0,
                "rejected": 0,
                "unrouted": 0,
                "filtered": 0,
                "mapped": 0,
                "failed": 0,
                "pending": 0,
            }
            whole = (self.whole.get(org) or Tally()).summary()
            datasets = {
                ds: {"title": self.datasets[ds].title if ds in self.datasets else ds, **t.summary()}
                for ds, t in sorted(self.by_dataset.get(org, {}).items())
            }
            out[org] = {"messages": msgs, **whole, "datasets": datasets,
                        "unrouted_by_type": dict(sorted(self.unrouted.get(org, {}).items()))}
            out[org]["score_parts"] = score_parts(out[org])
            out[org]["score"] = round(
                100 * sum(WEIGHTS[k] * (v or 0.0) for k, v in out[org]["score_parts"].items()), 1
            )
        return out


def score_parts(org: Mapping[str, Any]) -> dict[str, float | None]:
    """The four score components (0–1, None when there is nothing to measure)."""
    msgs = org["messages"]
    done = msgs["mapped"] + msgs["failed"] + msgs["rejected"] + msgs["unrouted"]
    req = org["completeness"]["required"]["rate"]
    opt = org["completeness"]["optional_mapped"]["rate"]
    completeness = None if req is None else (req if opt is None else (2 * req + opt) / 3)
    return {
        "validity": org["validity"]["rate"],
        "completeness": completeness,
        "success": ratio(msgs["mapped"], done),
        "timeliness": org["timeliness"]["within_24h"],
    }


def collect(conn: Connection, builder: BulletinBuilder, start: float, end: float, *,
            cipher: PayloadCipher = PLAIN) -> None:
    """Stream the period's messages and results from the store into `builder` (read-only SQL)."""
    result_org: dict[str, str] = {}
    rows = conn.execute(
        "SELECT r.message_id, r.route_id, r.dataset, r.record, r.filtered, r.error, m.sending_facility,"
        " m.received_at FROM results r JOIN messages m ON m.id = r.message_id"
        " WHERE m.received_at >= ? AND m.received_at < ?",
        (start, end),
    )
    for message_id, route_id, dataset, record_text, filtered, error, facility, received_at in rows:
        record = record_of(record_text, cipher)  # decrypted when the store seals records
        org_code = ((record or {}).get("envelope") or {}).get("source_org") or facility
        org = fold_org(org_code)
        result_org.setdefault(message_id, org)
        if route_id.startswith(UNROUTED):  # a FHIR resource no route took (engine/mapping/router.py)
            found = UNROUTED_REASON.search(filtered or "")
            builder.unrouted_type(fold_org(found.group(2) if found and found.group(2) else org_code),
                                  found.group(1) if found else "(unknown)")
            continue
        builder.result(org, message_id, received_at, route_id, dataset, record, filtered is not None, error)
    for message_id, facility, state, error, message_type in conn.execute(
        "SELECT id, sending_facility, state, error, message_type FROM messages"
        " WHERE received_at >= ? AND received_at < ?",
        (start, end),
    ):
        org = fold_org(facility) if facility else result_org.get(message_id, UNKNOWN_ORG)
        builder.message(org, state, error, message_type)


def rank(figures: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Organisations by score, best first; ties by code."""
    return sorted(figures, key=lambda org: (-figures[org]["score"], org))


def bulletin(
    conn: Connection,
    month: str,
    *,
    datasets: Mapping[str, DatasetFields],
    routes: Mapping[str, RouteFields],
    org: str | None = None,
    generated_at: float | None = None,
    cipher: PayloadCipher = PLAIN,
) -> dict[str, Any]:
    """The bulletin for `month` (`YYYY-MM`), with each organisation's change against the month before."""
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    for period in (month, previous_month(month)):
        builder = BulletinBuilder(datasets, routes)
        collect(conn, builder, *month_bounds(period), cipher=cipher)
        figures[period] = builder.report()
    now, before = figures[month], figures[previous_month(month)]
    order, order_before = rank(now), rank(before)
    organisations = []
    for position, code in enumerate(order, 1):
        entry = {"org": code, "rank": position, **now[code]}
        if code in before:
            entry["previous"] = {"score": before[code]["score"], "rank": order_before.index(code) + 1}
            entry["change"] = {
                "score": round(now[code]["score"] - before[code]["score"], 1),
                "rank": order_before.index(code) + 1 - position,
            }
        else:
            entry["previous"] = entry["change"] = None
        organisations.append(entry)
    if org is not None:
        organisations = [o for o in organisations if o["org"] == fold_org(org)]
    start, end = month_bounds(month)
    return {
        "month": month,
        "period": {"start": start, "end": end, "time_zone": "UTC+08:00"},
        "generated_at": generated_at,
        "weights": dict(WEIGHTS),
        "organisations": organisations,
    }


def dataset_fields(registry: Any) -> dict[str, DatasetFields]:
    """Dataset id → required/optional top-level fields and title, from a DatasetRegistry."""
    out = {}
    for ds in registry.datasets():
        dataset = registry.get(ds)
        names = {n: info for n, info in dataset.fields.items() if "." not in n and "[" not in n}
        out[ds] = DatasetFields(
            title=dataset.title,
            required=frozenset(n for n, i in names.items() if i.required),
            optional=frozenset(n for n, i in names.items() if not i.required),
        )
    return out


def route_fields(routes: Iterable[Any]) -> dict[str, RouteFields]:
    """Route id → what it maps (top-level field names and `each:` groups), for routes with a target."""
    return {
        r.id: RouteFields(
            dataset=r.target, fields=frozenset([f.name for f in r.fields] + [e.name for e in r.each])
        )
        for r in routes
        if r.target
    }


__all__ = [
    "BulletinBuilder",
    "DatasetFields",
    "RouteFields",
    "bulletin",
    "dataset_fields",
    "fold_org",
    "month_bounds",
    "previous_month",
    "route_fields",
]
