"""The Router: parse a stored message, select the routes that match it, map it with each.

Selection is the same everywhere (engine pipeline, ``yonglink map``, route tests): the channel's
``routes:`` list (if any), the route's ``match.channels``, HL7 message type / FHIR resourceType, then
``match.when``. A FHIR Bundle of type transaction / batch / message / collection / searchset is first
offered whole to routes whose resource_type is ``Bundle`` (a lab report needs its DiagnosticReport and
Observations together), then each entry is routed on its own; results are concatenated
(`engine.fhir.bundle.entries`: a DELETE entry is routed as a stub of what it deletes, operation
``delete``). An HL7 v2 batch stored whole is split the same way. When one route maps several entries
of a Bundle, the second and later results get route ids ``<id>#2``, ``#3`` ... (the store keeps one
result per message and route id).

A FHIR resource (a Bundle entry, or a resource stored alone) that no route takes is never dropped
silently: it gets a filtered result ``(unrouted)`` naming the entry and its resource type, and is
counted per resource type in the quality counters (``/status`` ``quality.unrouted``). Entries of a
Bundle that a ``resource_type: Bundle`` route took are taken with it; a MessageHeader is read as the
header. A resource without a business identifier gets a derived one
(`engine.fhir.bundle.with_business_identifier`); a message that names no sender takes its channel's
``source_org``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import orjson

from engine.datasets.registry import DatasetRegistry
from engine.errors import EngineError, MappingError
from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import decode, sniff_charset
from engine.hl7v2.er7 import Er7Message
from engine.mapping.identity import Convention
from engine.mapping.mapper import Outcome, Unit, run_route
from engine.mapping.model import Route
from engine.mapping.quality import QualityCounter, dataset_fields
from engine.message_view import FHIR_CONTENT_TYPES, HL7_CONTENT_TYPES
from engine.metrics import Metrics
from engine.types import RouteResult, StoredMessage

DEFAULT_FHIR_RELEASE = "R4B"
"""fhir.resources release used to parse FHIR (the R4 family Chinese FHIR IGs use)."""
UNROUTED = "(unrouted)"
"""Route id of the filtered result recording a FHIR resource no route takes."""
TAKEN_AS_HEADER = frozenset({"MessageHeader"})
"""Entries read as the message's header (sender, event; `engine.fhir.source.fhir_header`), not data."""


class Router:
    """Maps messages with compiled routes; also keeps the data-quality counts since it was built."""

    def __init__(self, routes: list[Route], *, datasets: DatasetRegistry | None,
                 channel_routes: Mapping[str, frozenset[str] | None] | None = None,
                 metrics: Metrics | None = None, fhir_release: str = DEFAULT_FHIR_RELEASE,
                 channel_conventions: Mapping[str, tuple[Convention, ...]] | None = None,
                 channel_orgs: Mapping[str, str] | None = None) -> None:
        self.routes = routes
        self.datasets = datasets
        self.channel_routes = dict(channel_routes or {})
        self.channel_conventions = dict(channel_conventions or {})
        """Resident-ID conventions per channel name (config `channels[].identity.conventions`)."""
        self.channel_orgs = dict(channel_orgs or {})
        """Channel → its `source_org`: the sender of messages that name none."""
        self.metrics = metrics
        self.fhir_release = fhir_release
        self.quality = QualityCounter(dataset_fields(datasets))
        self._candidates: dict[tuple[str, str, str, str], list[Route]] = {}
        self._channel_has_routes: dict[str | None, bool] = {}

    # --- the engine's contract -------------------------------------------------------------------

    def route(self, msg: StoredMessage) -> list[RouteResult]:
        """Every selected route's result for `msg` (sync, CPU only); a bad payload is one error result."""
        return [o.result for o in self.route_outcomes(msg)]

    def continue_counts(self, previous: Router) -> None:
        """Count on in `previous`'s data-quality counter: after a reload the counts stay "since start"."""
        self.quality = previous.quality

    def quality_snapshot(self) -> dict[str, Any]:
        """Data-quality counts since start (for ``/status`` ``quality``)."""
        return self.quality.snapshot()

    # --- details ---------------------------------------------------------------------------------

    def route_outcomes(self, msg: StoredMessage, *, only: str | None = None,
                       observe: bool = True) -> list[Outcome]:
        """Like `route`, with the org and invalid fields of each result; `only` restricts to one route id."""
        if not self.may_route(msg.channel):
            return []  # nothing could select it: skip parsing (a pass-through-less, route-less channel)
        try:
            units = self.units(msg)
        except (EngineError, ValueError) as exc:
            text = f"cannot parse the message: {exc}"
            org = msg.sending_facility or ""
            outcome = Outcome(RouteResult(route_id="(parse)", error=text), org, None, [])
            if observe:
                self.observe(outcome)
            return [outcome]
        try:
            return self._outcomes(msg, units, only, observe)
        finally:
            for unit in units:
                if isinstance(unit.source, Er7Message):
                    unit.source.release()  # break the message/segment cycle: freed by refcount now

    def _outcomes(self, msg: StoredMessage, units: list[Unit], only: str | None,
                  observe: bool) -> list[Outcome]:
        outcomes: list[Outcome] = []
        seen: dict[str, int] = {}
        bundle_taken = False
        for n, unit in enumerate(units):
            route_outcomes: list[Outcome] = []
            for route in self.select(msg.channel, unit, only=only):
                try:
                    route_outcomes += run_route(route, unit, self.datasets)
                except MappingError as exc:  # e.g. a FHIRPath that fails at run time on this input
                    result = RouteResult(route_id=route.id, dataset=route.target,
                                         error=f"{route.file}: {exc}", destinations=route.destinations)
                    org = unit.source.header.get("sending_facility") or ""
                    route_outcomes.append(Outcome(result, org, route.target, []))
            if n == 0 and len(units) > 1:  # the Bundle itself: its entries follow
                bundle_taken = bool(route_outcomes)
            elif (not route_outcomes and only is None and not bundle_taken and unit.source.kind == "fhir"
                  and unit.source.header.get("resource_type") not in TAKEN_AS_HEADER):
                route_outcomes.append(unrouted(unit))
            for out in route_outcomes:
                rid = out.result.route_id
                k = seen[rid] = seen.get(rid, 0) + 1
                if k > 1:
                    out.result = replace(out.result, route_id=f"{rid}#{k}")
                if observe:
                    self.observe(out)
                outcomes.append(out)
        return outcomes

    def observe(self, out: Outcome) -> None:
        """Count one route outcome in the data-quality counters (also for outcomes mapped elsewhere:
        engine/mapping/pool.py maps in worker processes and observes here)."""
        r = out.result
        if out.unrouted is not None:
            self.quality.observe_unrouted(out.org, out.unrouted)
            return
        self.quality.observe(out.org, out.dataset, record=r.record, error=r.error,
                             filtered=r.filtered is not None, invalid=out.invalid)

    def observe_no_route(self, msg: StoredMessage) -> None:
        """Count a message no route took (stored `filtered`, "no route matched") per sending organisation
        and message type beside the unrouted FHIR resources (`quality.unrouted` in `/status`), so a sender
        whose messages silently go nowhere shows up. Called by the engine for every such outcome, also
        when mapping ran in worker processes."""
        org = msg.sending_facility or self.channel_orgs.get(msg.channel) or None
        self.quality.observe_unrouted(org, msg.message_type or msg.content_type)

    def may_route(self, channel: str | None) -> bool:
        """False when no route can select messages of `channel` (by the route's and channel's lists)."""
        found = self._channel_has_routes.get(channel)
        if found is None:
            allowed = self.channel_routes.get(channel) if channel is not None else None
            found = any((allowed is None or r.id in allowed)
                        and (r.channels is None or channel in r.channels) for r in self.routes)
            self._channel_has_routes[channel] = found
        return found

    def candidates(self, header: Mapping[str, str]) -> list[Route]:
        """Routes that could match a message with this header (by kind and type), in load order.

        An index only: `Route.matches` still decides. Cached per (kind, type, code, resourceType).
        """
        key = (header.get("kind", ""), header.get("message_type", ""), header.get("message_code", ""),
               header.get("resource_type", ""))
        found = self._candidates.get(key)
        if found is None:
            kind, mtype, mcode, rtype = key
            found = [r for r in self.routes if r.kind == "any" or (r.kind == kind and (
                (kind == "hl7v2" and (not (r.message_types or r.message_codes) or mtype in r.message_types
                                      or mcode in r.message_codes))
                or (kind == "fhir" and (not r.resource_types or rtype in r.resource_types))))]
            if len(self._candidates) < 1024:  # bounded: types come from the wire
                self._candidates[key] = found
        return found

    def select(self, channel: str | None, unit: Unit, *, only: str | None = None) -> Iterable[Route]:
        """The routes whose match selects this unit, in load order."""
        allowed = self.channel_routes.get(channel) if channel is not None else None
        for route in self.candidates(unit.source.header):
            if only is not None and route.id != only:
                continue
            if allowed is not None and route.id not in allowed:
                continue
            if route.matches(channel, unit.source):
                yield route

    def closest(self, msg: StoredMessage, *, limit: int = 3) -> list[tuple[str, str]]:
        """For a message no route selects: the routes that came closest, with why each did not match
        (`Route.mismatch`: the furthest check reached first, then load order). For `yonglink map`."""
        misses: dict[str, tuple[int, int, str]] = {}
        allowed = self.channel_routes.get(msg.channel)
        for unit in self.units(msg):
            for order, route in enumerate(self.routes):
                if allowed is not None and route.id not in allowed:
                    miss = (-1, f"channel {msg.channel!r} does not list this route in its routes:")
                else:
                    found = route.mismatch(msg.channel, unit.source)
                    if found is None:
                        continue
                    miss = (found.stage, found.reason)
                best = misses.get(route.id)
                if best is None or miss[0] > -best[0]:
                    misses[route.id] = (-miss[0], order, miss[1])
        ranked = sorted(misses.items(), key=lambda kv: kv[1][:2])
        return [(route_id, reason) for route_id, (_, _, reason) in ranked[:limit]]

    def units(self, msg: StoredMessage) -> list[Unit]:
        """Parse the payload: one unit for HL7 v2 or a FHIR resource; Bundle + its entries for Bundles."""
        raw = msg.raw or b""
        ctype = msg.content_type.split(";", 1)[0].strip().lower()
        channel_org = self.channel_orgs.get(msg.channel, "")
        base = {"message_id": msg.id, "received_at": msg.received_at, "channel": msg.channel,
                "sending_facility": msg.sending_facility or channel_org or None,
                "conventions": self.channel_conventions.get(msg.channel, ())}
        if ctype in HL7_CONTENT_TYPES:
            text = decode(raw, msg.charset or sniff_charset(raw))
            # A batch (FHS/BHS or several MSH) stored whole: each message is routed on its own.
            head = text.lstrip("\ufeff\r\n\t ")[:3]
            batch = head in ("FHS", "BHS") or "\rMSH" in text or "\nMSH" in text
            return [Unit(source=Er7Message.parse(t), **base)  # type: ignore[arg-type]
                    for t in (split_batch(text) if batch else [text])]
        if ctype in FHIR_CONTENT_TYPES:
            from engine.fhir.parse import parse_fhir, to_dict

            meta = msg.metadata or {}
            if meta.get("request_method") == "DELETE":  # a stub of what a DELETE entry deletes, stored by
                data = orjson.loads(raw)                 # the intake (engine.fhir.bundle.delete_stub): it
            else:                                        # lacks the resource's required elements
                data = to_dict(parse_fhir(raw, content_type=ctype, release=self.fhir_release))
            parent = {"sending_facility": msg.sending_facility or ""}
            return fhir_units(data, self.fhir_release, base, method=meta.get("request_method"),
                              parent=parent, channel_org=channel_org, entry=meta.get("bundle_entry"))
        raise ValueError(f"content type {msg.content_type!r} is neither HL7 v2 nor FHIR")


def unrouted(unit: Unit) -> Outcome:
    """The filtered result recording a FHIR resource no route takes (never dropped silently)."""
    rtype = unit.source.header.get("resource_type") or "(unknown)"
    entry = unit.extra.get("bundle_entry")
    where = f"Bundle.entry[{entry}] ({rtype})" if entry is not None else rtype
    org = unit.source.header.get("sending_facility") or unit.sending_facility or ""
    sender = f" from {org}" if org else ""  # the org is read back by `yonglink quality` (quality.py)
    result = RouteResult(route_id=UNROUTED, filtered=f"no route takes {where}{sender}")
    return Outcome(result, org, None, [], unrouted=rtype)


def fhir_units(data: dict[str, Any], release: str, base: Mapping[str, Any], *, method: str | None = None,
               parent: Mapping[str, str] | None = None, channel_org: str = "",
               entry: str | None = None) -> list[Unit]:
    """A FHIR resource as units: itself, and for splittable Bundles each entry (`bundle.entries`).

    ``method`` is the request method of a Bundle entry stored alone; ``parent`` the header facts of the
    Bundle it came from (its sender); ``channel_org`` the channel's `source_org`.
    """
    from engine.fhir.bundle import entries, with_business_identifier
    from engine.fhir.source import FhirSource

    bundle_header = _header(data, release, parent or {}, channel_org)
    found = entries(data)
    enriched = {e.index: with_business_identifier(e.resource, _header(e.resource, release, bundle_header,
                                                                      channel_org)["sending_facility"],
                                                  release) for e in found}
    if any(enriched[e.index] is not e.resource for e in found):
        data = {**data, "entry": [({**ent, "resource": enriched[i]} if i in enriched and "resource" in ent
                                   else ent) for i, ent in enumerate(data.get("entry") or [])]}
    data = with_business_identifier(data, bundle_header["sending_facility"], release)
    extra = {"bundle_entry": entry} if entry is not None else {}
    whole = Unit(source=FhirSource(data, release=release, header=bundle_header), fhir=data,
                 request_method=method, extra=extra, **base)
    if not found:
        return [whole]
    units = [whole]
    for e in found:
        resource = enriched[e.index]
        header = _header(resource, release, bundle_header, channel_org)
        units.append(Unit(source=FhirSource(resource, release=release, header=header), fhir=resource,
                          request_method=e.method, extra={"bundle_entry": str(e.index)}, **base))
    return units


def _header(data: dict[str, Any], release: str, parent: Mapping[str, str], channel_org: str = ""
            ) -> dict[str, str]:
    """FHIR header; sending_facility: MessageHeader.source.name, the parent Bundle's, this `meta.source`,
    the channel's `source_org`, then the Organization the resource names."""
    from engine.fhir.bundle import org_from_uri
    from engine.fhir.source import fhir_header

    header = fhir_header(data, release)
    for key in ("sending_facility", "sending_application", "receiving_facility", "trigger_event"):
        header[key] = header.get(key) or parent.get(key, "")
    meta_source = (data.get("meta") or {}).get("source")
    if not header["sending_facility"] and isinstance(meta_source, str):
        header["sending_facility"] = org_from_uri(meta_source)
    if not header["sending_facility"]:
        header["sending_facility"] = channel_org or referenced_org(data) or ""
    return header


ORG_ELEMENTS = ("managingOrganization", "serviceProvider", "custodian", "organization", "performer",
                "issuer", "actor", "qualification", "entry", "resource", "assigner")
"""Where a resource names the organisation it comes from (searched in this order, a few levels deep)."""


def referenced_org(data: Any, depth: int = 0) -> str | None:
    """The organisation a FHIR resource (or Bundle) names: an Organization resource's identifier, or a
    ``Organization/<id>`` reference (its identifier value when given, else the id)."""
    if depth > 6:
        return None
    if isinstance(data, list):
        for item in data:
            found = referenced_org(item, depth + 1)
            if found:
                return found
        return None
    if not isinstance(data, dict):
        return None
    if data.get("resourceType") == "Organization":
        ident = data.get("identifier") or []
        value = ident[0].get("value") if ident and isinstance(ident[0], dict) else None
        return str(value or data.get("id") or "") or None
    ref = data.get("reference")
    if isinstance(ref, str) and ref.startswith("Organization/"):
        ident = data.get("identifier") or {}
        return str(ident.get("value") or ref.split("/", 2)[1]) or None
    for key in ORG_ELEMENTS:
        if key in data:
            found = referenced_org(data[key], depth + 1)
            if found:
                return found
    return None
