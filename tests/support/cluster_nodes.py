"""Engine nodes on one PostgreSQL, in this process (engine/cluster/ tests): start a node with its own id,
store and cluster; commit routed records and hand them over as the pipeline does.

`HandedCluster` is one node whose singletons the test hands out. A node "dies" with `die()`: its
cluster connections close without releasing leases or marking the node stopped (what `kill -9`
leaves), then the rest of the engine stops. The 3-node stories with real
processes, HAProxy and `kill -9` are tests/cluster/ (clustertest).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from engine.cluster import LocalCluster
from engine.cluster.leases import with_session_options
from engine.cluster.postgres import PostgresCluster
from engine.config import Config
from engine.runtime import Engine
from engine.store import messages
from engine.types import HL7V2, InboundMessage, MessageState, RouteResult


async def start_node(config: Config, dsn: str, node_id: str) -> Engine:
    """An engine that is node `node_id` of the cluster on `dsn` (heartbeat and lease from the config)."""
    from engine.store.postgres import PostgresStore

    cl = config.engine.cluster
    store = PostgresStore(with_session_options(dsn, node_id, cl.lease))
    cluster = PostgresCluster(node_id=node_id, dsn=dsn, heartbeat=cl.heartbeat, lease=cl.lease)
    engine = Engine(config, store=store, cluster=cluster)
    await engine.start()
    return engine


async def die(engine: Engine) -> None:
    """The node stops being part of the cluster at once and leaves its leases to expire."""
    cluster = engine.cluster
    if not isinstance(cluster, PostgresCluster):
        raise TypeError("die() is for PostgreSQL nodes")
    await cluster.abandon()
    await engine.stop()


async def queue_routed(engine: Engine, records: Sequence[dict[str, Any]], destination: str) -> list[str]:
    """Commit mapped messages and their delivery rows in one transaction, then hand the rows over, as the
    pipeline does (`record_outcome`, `record_many`, then `hand_over` after the commit); message ids."""
    now = time.time()

    def op(conn: Any) -> tuple[list[str], Any]:
        ids, routed = [], []
        for rec in records:
            acc = messages.insert(conn, InboundMessage(channel="lab", raw=b"MSH|^~\\&|LIS|NBH\r",
                                                       content_type=HL7V2, received_at=now), dedupe_window=0)
            stored = messages.get(conn, acc.message_id)
            results = [RouteResult(route_id="r", dataset="person", record=rec, destinations=(destination,))]
            messages.record_outcome(conn, acc.message_id, MessageState.MAPPED, None, results, now=now)
            ids.append(acc.message_id)
            routed.append((stored, results))
        return ids, engine.delivery.record_many(conn, routed, now)

    ids, rows = await engine.store.write(op)
    engine.delivery.hand_over(rows)
    return ids


class HandedCluster(LocalCluster):
    """One node (any store) whose per-destination singletons (`fifo:…`, `export:…`) the test gives and
    takes back, as another node's heartbeat would; the engine-wide ones it always holds."""

    def __init__(self) -> None:
        super().__init__(node_id="here")
        self.held: set[str] = set()
        self.announced: list[str] = []

    def holds(self, name: str) -> bool:
        return ":" not in name or name in self.held

    def notify_wake(self, destinations: Iterable[str]) -> None:
        self.announced.extend(destinations)

    def give(self, name: str) -> None:
        self.held.add(name)
        for fn in self._on_holdings:
            fn(name, True)

    def take(self, name: str) -> None:
        self.held.discard(name)
        for fn in self._on_holdings:
            fn(name, False)
