"""Prometheus metrics, one registry per engine (so several engines in one test process don't mix).

Naming follows the Prometheus conventions (https://prometheus.io/docs/practices/naming/): a count since
start is a counter named `_total`, a current value is a gauge, units are base units in the name
(`_seconds`, `_bytes`). The `_created` series prometheus_client adds to every counter are switched off:
they double the series count and no dashboard of ours reads them.

Counters and histograms are updated where things happen (channels, pipeline, delivery workers). Numbers
that describe current state (channel state, open connections, queue depth, destination up, store size)
and the since-start counts the store and the router keep themselves (commits, data-quality results) are
read from the last `Engine.status()` snapshot when `/metrics` is scraped (`update_from_status`), so they
can never drift from what `/status` shows. `process_*` (CPU, memory, open files) and `python_gc_*`
come from prometheus_client's standard collectors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from engine.types import ChannelState

ACK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds; fine-grained under 15 ms because that is the p99 target for MLLP ACKs."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format's media type."""

MAX_ORG_LABELS = 200
"""Distinct `org` label values exported per scrape; the rest are summed under `org="other"`. A
regional platform has tens to a few hundred sending units; the cap keeps a misconfigured sender that
invents a new MSH-4 per message from exploding the series count."""

OTHER_ORG = "other"
DESTINATION_UP_STATES = frozenset({"ok", "blocked"})
"""Destination states that count as reachable for `yonglink_destination_up` (blocked: reachable, but a
strict-FIFO head keeps failing); `down` is 0; disabled destinations are not exported."""

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # process-wide; see docstring


class StatusCollector(Collector):
    """Families built from the last `Engine.status()` snapshot at collect time."""

    def __init__(self) -> None:
        self.status: Mapping[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        status = self.status
        up = GaugeMetricFamily("yonglink_destination_up",
                               "1 while a destination is reachable (ok or blocked), 0 while it is down",
                               labels=["destination"])
        for dest in status.get("destinations", ()):
            state = str(dest.get("state", ""))
            if state != "disabled":
                up.add_metric([str(dest.get("name", ""))], 1.0 if state in DESTINATION_UP_STATES else 0.0)
        yield up
        store = status.get("store", {})
        commits = CounterMetricFamily("yonglink_store_commits", "Store group commits since start")
        commits.add_metric([], float(store.get("commits") or 0))
        yield commits
        ops = CounterMetricFamily("yonglink_store_ops_committed",
                                  "Store write operations committed since start")
        ops.add_metric([], float(store.get("ops_committed") or 0))
        yield ops
        yield quality_family(status.get("quality") or {})


def quality_family(quality: Mapping[str, Any]) -> CounterMetricFamily:
    """`yonglink_quality_records_total{org, dataset, outcome}` from the router's since-start counts, with
    at most `MAX_ORG_LABELS` organisations (the busiest; the others summed as `other`)."""
    family = CounterMetricFamily("yonglink_quality_records",
                                 "Route results since start by sending organisation, dataset and outcome",
                                 labels=["org", "dataset", "outcome"])
    orgs: Mapping[str, Mapping[str, Mapping[str, Any]]] = quality.get("organisations") or {}
    volume = {org: sum(int(s.get(k) or 0) for s in by_ds.values() for k in ("mapped", "failed", "filtered"))
              for org, by_ds in orgs.items()}
    kept = set(sorted(volume, key=lambda o: (-volume[o], o))[:MAX_ORG_LABELS])
    totals: dict[tuple[str, str, str], float] = {}
    for org, by_ds in orgs.items():
        label = org if org in kept else OTHER_ORG
        for dataset, slot in by_ds.items():
            for outcome in ("mapped", "failed", "filtered"):
                key = (label, dataset, outcome)
                totals[key] = totals.get(key, 0.0) + float(slot.get(outcome) or 0)
    for labels, value in sorted(totals.items()):
        family.add_metric(list(labels), value)
    return family


class Metrics:
    """Every metric yonglink exports. Rooms update these; `/metrics` renders `render()`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        prometheus_client.ProcessCollector(registry=r)
        prometheus_client.PlatformCollector(registry=r)
        prometheus_client.GCCollector(registry=r)
        self.messages = Counter("yonglink_messages", "Messages by channel and outcome",
                                ["channel", "outcome"], registry=r)
        self.ack_latency = Histogram("yonglink_ack_latency_seconds",
                                     "Time from a complete inbound message to its acknowledgement sent",
                                     ["channel"], buckets=ACK_BUCKETS, registry=r)
        self.connections = Gauge("yonglink_connections_open", "Open inbound connections", ["channel"],
                                 registry=r)
        self.queue_depth = Gauge("yonglink_queue_depth", "Deliveries queued per destination",
                                 ["destination"], registry=r)
        self.deliveries = Counter("yonglink_deliveries", "Delivery attempts by destination and outcome",
                                  ["destination", "outcome"], registry=r)
        self.dead_letters = Gauge("yonglink_dead_letters", "Dead letters waiting per destination/kind",
                                  ["destination"], registry=r)
        self.unmapped_codes = Counter("yonglink_unmapped_codes", "Codes a code table could not map",
                                      ["table"], registry=r)
        # --- state gauges, refreshed from Engine.status() on scrape ---------------------------------
        self.build_info = Gauge("yonglink_build_info", "Always 1; the labels say which build runs",
                                ["version"], registry=r)
        self.start_time = Gauge("yonglink_start_time_seconds", "Unix time the engine started", registry=r)
        self.channel_state = Gauge("yonglink_channel_state",
                                   "1 for the state each channel is in, 0 for the others",
                                   ["channel", "state"], registry=r)
        self.retrying = Gauge("yonglink_deliveries_retrying", "Queued deliveries that failed at least once",
                              ["destination"], registry=r)
        self.oldest_queued_age = Gauge("yonglink_queue_oldest_age_seconds",
                                       "Age of the oldest queued delivery (0 when none)",
                                       ["destination"], registry=r)
        self.store_size = Gauge("yonglink_store_size_bytes", "Store file size (database plus WAL)",
                                registry=r)
        self.admin_requests = Counter("yonglink_admin_requests", "Admin API requests by method and status",
                                      ["method", "status"], registry=r)
        self._status = StatusCollector()
        r.register(self._status)

    def update_from_status(self, status: Mapping[str, Any], *, now: float) -> None:
        """Copy the current-state numbers of an `Engine.status()` snapshot into the gauges."""
        self._status.status = status
        engine = status.get("engine", {})
        self.build_info.labels(str(engine.get("version", ""))).set(1)
        if engine.get("started_at"):
            self.start_time.set(engine["started_at"])
        for ch in status.get("channels", ()):
            for state in ChannelState:
                self.channel_state.labels(ch["name"], state.value).set(1 if ch.get("state") == state else 0)
            self.connections.labels(ch["name"]).set(ch.get("connections_open") or 0)
        for dest in status.get("destinations", ()):
            name = str(dest.get("name", ""))
            self.queue_depth.labels(name).set(dest.get("queued") or 0)
            self.retrying.labels(name).set(dest.get("retrying") or 0)
            dead = dest.get("dead_letters", dest.get("dead"))
            self.dead_letters.labels(name).set(dead or 0)
            oldest = dest.get("oldest_queued_age_seconds")
            if oldest is None and dest.get("oldest_queued"):
                oldest = max(0.0, now - float(dest["oldest_queued"]))
            self.oldest_queued_age.labels(name).set(oldest or 0)
        store = status.get("store", {})
        self.store_size.set(store.get("size_bytes") or 0)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
