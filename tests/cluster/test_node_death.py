"""A node's death loses and stalls nothing (issue #13 item 3).

Three nodes on one PostgreSQL behind HAProxy take a stream of ADT^A01 over MLLP (each sender resends a
message until it gets AA, as hospital senders do); one node is killed with SIGKILL mid-stream. Then:
every AA'd message is stored exactly once (the resends of messages whose ACK died with the node are
answered as duplicates by whichever node they reach), every message's person record reaches the HTTP
sink (at least once, always under the same Idempotency-Key), and nothing is left queued once the dead
node's leases expired.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from cluster import send_load
from cluster_story import LEASE, person_route_to_sink
from delivery_support import Sink, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

MESSAGES = 300
KILL_AFTER = 80


async def test_kill_minus_9_of_one_node_mid_load_loses_nothing_and_every_delivery_is_made(
        make_cluster: Any, sink: Sink) -> None:
    cluster = await make_cluster(person_route_to_sink(sink.url)).start()
    victim = cluster.nodes[1]
    ids = [f"N{i:04d}" for i in range(MESSAGES)]
    enough = asyncio.Event()
    load = asyncio.create_task(send_load(cluster.haproxy.mllp_port, ids, connections=6, started=enough,
                                         after=KILL_AFTER))
    await asyncio.wait_for(enough.wait(), 60)
    cluster.kill(victim)
    outcome = await asyncio.wait_for(load, 120)

    assert sorted(outcome.acked) == ids, cluster.log_tails()
    assert outcome.lost > 0, "the kill cut connections with frames in flight (else the story proved nothing)"
    stored = dict(await cluster.query("SELECT control_id, count(*) FROM messages GROUP BY control_id"))
    assert stored == dict.fromkeys(ids, 1), "every AA'd message stored exactly once"

    # Every delivery made: the dead node's queued deliveries are taken over after its lease expires.
    async def all_sent() -> bool:
        rows = await cluster.query("SELECT count(*) FROM deliveries WHERE state <> 'sent'")
        return rows[0][0] == 0
    await wait_for(all_sent, timeout=LEASE * 5 + 30)
    deliveries = dict(await cluster.query("SELECT id, message_id FROM deliveries"))
    assert len(deliveries) == MESSAGES
    keys_by_message: dict[str, set[str]] = defaultdict(set)
    for request in sink.accepted:
        keys_by_message[request.message_id].add(request.key)
    assert {k for keys in keys_by_message.values() for k in keys} == set(deliveries), \
        "the sink got every delivery id, and no other"
    assert all(len(keys) == 1 for keys in keys_by_message.values()), \
        "a delivery sent again after the takeover keeps its Idempotency-Key"
    stuck = await cluster.query("SELECT count(*) FROM messages WHERE state = 'received'")
    assert stuck[0][0] == 0, "no message of the dead node left unprocessed"
