"""A FIFO destination keeps per-key order across a node's death (issue #13 item 3).

The destination is `ordering: fifo` with `order_key: patient_id`: records of one patient reach the sink
in the order their messages were ACKed, whichever node took each message. One node at a time sends a
FIFO destination (the holder of its advisory lock, `/status` → `cluster.nodes[].singletons` lists
`fifo:sink`); that node is killed with SIGKILL mid-stream, the lock moves with its dead session, and
the new holder continues each patient's sequence where it stopped (a record in flight at the kill may
arrive twice, under the same Idempotency-Key, never out of order with the ones after it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from typing import Any

import pytest
from cluster import Cluster, Node, adt, send_load
from cluster_story import LEASE, person_route_to_sink
from delivery_support import Sink, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

PATIENTS = 4
PER_PATIENT = 60
KILL_AFTER = 60

FIFO = """
  - name: ordered
    type: http
    routes: [adt_person]
    ordering: fifo
    order_key: patient_id
    retry: {initial_delay: 0.2s, max_delay: 1s}
    http: {url: "URL", read_timeout: 5s}
"""


def fifo_holder(cluster: Cluster) -> Node | None:
    """The node `/status` names as holder of the `fifo:ordered` singleton (None: nobody yet)."""
    for node in cluster.nodes:
        if not node.alive:
            continue
        for member in node.admin("/status").get("cluster", {}).get("nodes", []):
            if "fifo:ordered" in member.get("singletons", []):
                return next(n for n in cluster.nodes if n.name == member["id"])
    return None


async def trail(cluster: Cluster, patient: str) -> str:
    """For a failure message: each of the patient's messages with who stored it, when, and its delivery."""
    p = int(patient[1:])
    rows = await cluster.query(
        "SELECT m.control_id, m.owner, m.state,"
        " round((m.received_at - min(m.received_at) OVER ())::numeric, 3),"
        " d.seq, d.owner, round((d.created_at - min(m.received_at) OVER ())::numeric, 3) FROM messages m"
        " JOIN deliveries d ON d.message_id = m.id AND d.destination = 'ordered'"
        " WHERE m.control_id LIKE %s ORDER BY m.control_id", f"F{p}-%")
    head = "control_id msg_owner state received_at(s) delivery_seq delivery_owner created_at(s)"
    return "\n".join([head, *(" ".join(map(str, r)) for r in rows)])


async def test_a_fifo_destination_keeps_each_patients_order_when_the_node_sending_it_dies(
        make_cluster: Any, sink: Sink) -> None:
    fifo_sink = await Sink(delay=0.01).start()  # a backlog builds up behind the record in flight
    cluster = make_cluster(person_route_to_sink(sink.url, destination=FIFO.replace("URL", fifo_sink.url)))
    try:
        await cluster.start()
        await story(cluster, fifo_sink)
    finally:
        await fifo_sink.stop()


async def story(cluster: Cluster, fifo_sink: Sink) -> None:
    await wait_for(lambda: fifo_holder(cluster), timeout=LEASE * 3)
    enough = asyncio.Event()

    def patient_messages(p: int) -> Any:
        return lambda cid: adt(cid, patient=f"P{p:05d}", name=f"S^{int(cid.rsplit('-', 1)[1]):06d}")

    loads = [asyncio.create_task(send_load(  # one connection per patient: each patient's sends in order
        cluster.haproxy.mllp_port, [f"F{p}-{i:04d}" for i in range(PER_PATIENT)], connections=1,
        make=patient_messages(p), started=enough, after=KILL_AFTER // PATIENTS)) for p in range(PATIENTS)]
    await asyncio.wait_for(enough.wait(), 60)
    victim = fifo_holder(cluster)
    assert victim is not None
    cluster.kill(victim)
    outcomes = await asyncio.wait_for(asyncio.gather(*loads), 120)
    assert all(len(o.acked) == PER_PATIENT for o in outcomes), cluster.log_tails()

    async def all_sent() -> bool:
        rows = await cluster.query("SELECT count(*) FROM deliveries WHERE destination = 'ordered'"
                                   " AND state = 'sent'")
        return rows[0][0] == PATIENTS * PER_PATIENT
    await wait_for(all_sent, timeout=LEASE * 5 + 60)

    sequences: dict[str, list[int]] = defaultdict(list)
    keys: dict[tuple[str, int], set[str]] = defaultdict(set)
    for request in fifo_sink.accepted:
        record = json.loads(request.body)
        seq = int(record["name"][1:])
        sequences[record["patient_id"]].append(seq)
        keys[(record["patient_id"], seq)].add(request.key)
    assert len(sequences) == PATIENTS
    for patient, seen in sequences.items():
        first_seen = list(dict.fromkeys(seen))
        assert first_seen == list(range(PER_PATIENT)), \
            f"{patient}: out of order {first_seen}; killed {victim.name}\n" + await trail(cluster, patient)
        assert all(b in (a, a + 1) for a, b in itertools.pairwise(seen)), \
            f"{patient}: only the record in flight at the kill may come again: {seen}"
    assert all(len(k) == 1 for k in keys.values()), "a record sent twice keeps its Idempotency-Key"
