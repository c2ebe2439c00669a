"""Each node owns what it takes in (docs/cluster.md, "Deliveries are leased"; issue #13 item 2).

Nodes started as operators start them (`yonglink run` on the shared config) store each message and
create each delivery with their own node id as `owner` (and a live lease) in the same INSERT. Without
it every row looks orphaned the moment it is written: another node's recovery sweep adopts messages
still being mapped (so a later message of the same patient can be delivered before an earlier one) and
any node reaps deliveries whose lease "expired" at birth.
"""

from __future__ import annotations

from typing import Any

import pytest
from cluster import send_load
from cluster_story import person_route_to_sink
from delivery_support import Sink, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


async def test_messages_and_deliveries_are_owned_by_the_node_that_stored_them(
        make_cluster: Any, sink: Sink) -> None:
    cluster = await make_cluster(person_route_to_sink(sink.url)).start()
    ids = [f"O{i:03d}" for i in range(30)]
    outcome = await send_load(cluster.haproxy.mllp_port, ids, connections=3)
    assert sorted(outcome.acked) == ids
    await wait_for(lambda: len(sink.accepted) >= len(ids), timeout=30)

    names = {n.name for n in cluster.nodes}
    messages = dict(await cluster.query("SELECT owner, count(*) FROM messages GROUP BY owner"))
    deliveries = dict(await cluster.query("SELECT owner, count(*) FROM deliveries GROUP BY owner"))
    assert set(messages) <= names and sum(messages.values()) == len(ids), messages
    assert set(deliveries) <= names and sum(deliveries.values()) == len(ids), deliveries
