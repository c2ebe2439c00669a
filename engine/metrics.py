"""Prometheus metrics, one registry per engine (so several engines in one test process don't mix).

Counters and histograms are updated where things happen (channels, pipeline, delivery workers). Gauges
that describe current state (channel state, open connections, queue depth, store size) are refreshed
from `Engine.status()` when `/metrics` is scraped (`update_from_status`), so they can never drift from
what `/status` shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from engine.types import ChannelState

ACK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds; fine-grained under 15 ms because that is the p99 target for MLLP ACKs."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text exposition format's media type."""


class Metrics:
    """Every metric yonglink exports. Rooms update these; `/metrics` renders `render()`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
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
        self.store_commits = Gauge("yonglink_store_commits", "Group commits since start", registry=r)
        self.store_ops = Gauge("yonglink_store_ops_committed", "Write operations committed since start",
                               registry=r)
        self.admin_requests = Counter("yonglink_admin_requests", "Admin API requests by method and status",
                                      ["method", "status"], registry=r)

    def update_from_status(self, status: Mapping[str, Any], *, now: float) -> None:
        """Copy the current-state numbers of an `Engine.status()` snapshot into the gauges."""
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
        self.store_commits.set(store.get("commits") or 0)
        self.store_ops.set(store.get("ops_committed") or 0)

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
