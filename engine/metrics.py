"""Prometheus metrics, one registry per engine (so several engines in one test process don't mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ACK_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Seconds; fine-grained under 15 ms because that is the p99 target for MLLP ACKs."""


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

    def render(self) -> bytes:
        """The Prometheus text exposition format."""
        return generate_latest(self.registry)
