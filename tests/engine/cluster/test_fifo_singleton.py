"""A FIFO destination is sent by the one node holding its singleton (`fifo:<name>`), on any store.

These run one engine on SQLite with a cluster whose singletons the test hands out and takes back, as
another node's heartbeat would (the PostgreSQL implementation is in test_postgres_cluster.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import delivery_support as S
import orjson
from cluster_nodes import HandedCluster, queue_routed

from engine.cluster import fifo_singleton
from engine.config import Config
from engine.runtime import Engine

CONFIG = """
engine:
  store: {path: var/fifo.db}
  admin: {enabled: false}
destinations:
  - name: platform
    type: http
    ordering: fifo
    order_key: patient
    retry: {initial_delay: 0.05, jitter: 0}
    http: {url: "%s/r"}
"""


async def start(make_config: Callable[[str], Config], url: str, cluster: HandedCluster) -> Engine:
    engine = Engine(make_config(CONFIG % url), cluster=cluster)
    await engine.start()
    return engine


async def test_rows_for_a_fifo_destination_another_node_sends_are_announced_not_sent(
        make_config: Callable[[str], Config]) -> None:
    sink = await S.Sink().start()
    cluster = HandedCluster()
    engine = await start(make_config, sink.url, cluster)
    try:
        await queue_routed(engine, [{"patient": "p1", "n": i} for i in range(3)], "platform")
        assert cluster.announced == ["platform"]  # the holder is told at once, after the commit
        engine.delivery.workers["platform"].wake()  # and this node's worker, woken, still sends nothing
        await asyncio.sleep(0.3)  # what a worker that ignored the singleton would send in this time
        assert sink.requests == []
        cluster.give(fifo_singleton("platform"))  # the holder died: this node sends, in order
        await S.wait_for(lambda: len(sink.accepted) == 3)
        assert [orjson.loads(r.body)["n"] for r in sink.accepted] == [0, 1, 2]
    finally:
        await engine.stop()
        await sink.stop()


async def test_a_node_that_loses_a_fifo_destination_stops_after_the_row_in_flight(
        make_config: Callable[[str], Config]) -> None:
    sink = await S.Sink(delay=0.05).start()
    cluster = HandedCluster()
    cluster.held.add(fifo_singleton("platform"))
    engine = await start(make_config, sink.url, cluster)
    try:
        await S.inject(engine, records=[{"patient": "p1", "n": i} for i in range(40)],
                       destinations=("platform",))
        await S.wait_for(lambda: len(sink.requests) >= 3)
        cluster.take(fifo_singleton("platform"))
        sent_when_lost = len(sink.requests)
        await engine.pipeline.drain()
        await S.wait_for(lambda: engine.delivery.workers["platform"].inflight == {})
        assert len(sink.requests) <= sent_when_lost + 1  # at most the request already on the wire
        [(queued,)] = await S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'queued'")
        assert queued == 40 - len(sink.accepted)
    finally:
        await engine.stop()
        await sink.stop()
