"""PostgreSQL restarts mid-load: no AA without a commit, and the nodes recover by themselves (#13 item 3).

Three nodes behind HAProxy take a stream of ADT^A01; PostgreSQL is stopped like a crash (`pg_ctl stop
-m immediate`: every session cut, no checkpoint) and started again a second later. While it is down the
nodes answer no AA (AE, or the connection closes) and senders resend. Afterwards every control id that
got AA is in the database exactly once, every node answers `/readyz` again without being restarted, a
new batch through HAProxy is AA'd, and every message's delivery is made.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cluster import send_load
from cluster_story import person_route_to_sink
from delivery_support import Sink, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

MESSAGES = 300
RESTART_AFTER = 60


async def test_a_postgres_restart_mid_load_acks_nothing_uncommitted_and_the_nodes_recover_by_themselves(
        make_cluster: Any, sink: Sink) -> None:
    cluster = await make_cluster(person_route_to_sink(sink.url)).start()
    ids = [f"R{i:04d}" for i in range(MESSAGES)]
    enough = asyncio.Event()
    load = asyncio.create_task(send_load(cluster.haproxy.mllp_port, ids, connections=6, started=enough,
                                         after=RESTART_AFTER, attempts=200))
    await asyncio.wait_for(enough.wait(), 60)
    await cluster.restart_postgres(mode="immediate", down=1.0)
    outcome = await asyncio.wait_for(load, 180)

    assert outcome.negative or outcome.lost, "the restart refused some sends (else it proved nothing)"
    stored = dict(await cluster.query("SELECT control_id, count(*) FROM messages GROUP BY control_id"))
    assert set(outcome.acked) <= set(stored), "every AA'd control id was committed"
    assert sorted(outcome.acked) == ids and all(stored[c] == 1 for c in ids), cluster.log_tails()

    for node in cluster.nodes:  # recovered without a restart of any node
        assert node.alive
        await wait_for(lambda node=node: node.admin("/readyz")["ready"], timeout=30)
    after = [f"A{i:03d}" for i in range(30)]
    again = await send_load(cluster.haproxy.mllp_port, after, connections=3)
    assert sorted(again.acked) == after and again.lost == 0 and not again.negative

    async def all_sent() -> bool:
        rows = await cluster.query("SELECT count(*), count(*) FILTER (WHERE state = 'sent') FROM deliveries")
        return rows[0][0] == MESSAGES + len(after) == rows[0][1]
    await wait_for(all_sent, timeout=60)
