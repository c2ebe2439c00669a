"""The cluster harness itself, without PostgreSQL: engine nodes (one SQLite file each, so nothing is shared
and this is not yet a cluster) behind the private HAProxy that docs/cluster.md describes.

These prove the parts the cluster stories stand on: MLLP through HAProxy's TCP frontend reaches a node
and gets its AA, `balance leastconn` spreads connections over the nodes, and the `/readyz` health check
takes a node whose channel is stopped out of rotation so new connections go to the others.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cluster import Cluster, Node, send_load

pytestmark = pytest.mark.cluster


def stored_control_ids(node: Node) -> set[str]:
    """The control ids in a node's own SQLite store (read-only; the engine keeps running)."""
    conn = sqlite3.connect(f"file:{node.root / 'node.db'}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT control_id FROM messages")}
    finally:
        conn.close()


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path, nodes=2)
    try:
        yield await cluster.start()
    finally:
        cluster.close()


async def test_mllp_through_haproxy_gets_aa_from_the_nodes_and_leastconn_spreads_the_connections(
        two_nodes: Cluster) -> None:
    ids = [f"H{i}" for i in range(40)]
    outcome = await send_load(two_nodes.haproxy.mllp_port, ids, connections=4)

    assert sorted(outcome.acked) == sorted(ids) and not outcome.negative and outcome.lost == 0
    first, second = (stored_control_ids(n) for n in two_nodes.nodes)
    assert first | second == set(ids) and not first & second
    assert first and second, "leastconn: four concurrent connections land on both nodes"


async def test_a_node_whose_channel_is_stopped_fails_readyz_and_haproxy_sends_new_connections_elsewhere(
        two_nodes: Cluster) -> None:
    node1, node2 = two_nodes.nodes
    assert node1.admin("/channels/lab/stop", "POST")["channel"]["state"] == "stopped"
    assert node1.admin("/readyz")["ready"] is False
    await asyncio.to_thread(two_nodes.haproxy.wait_state, "node1", "DOWN")

    ids = [f"D{i}" for i in range(20)]
    outcome = await send_load(two_nodes.haproxy.mllp_port, ids, connections=2)

    assert sorted(outcome.acked) == sorted(ids) and outcome.lost == 0
    assert stored_control_ids(node2) >= set(ids) and not stored_control_ids(node1) & set(ids)


async def test_a_killed_node_is_taken_out_and_comes_back_after_a_restart_on_its_ports(
        two_nodes: Cluster) -> None:
    node1 = two_nodes.nodes[0]
    two_nodes.kill(node1)
    await asyncio.to_thread(two_nodes.haproxy.wait_state, "node1", "DOWN")
    outcome = await send_load(two_nodes.haproxy.mllp_port, [f"K{i}" for i in range(10)], connections=2)
    assert len(outcome.acked) == 10

    await two_nodes.start_node(node1)
    await asyncio.to_thread(two_nodes.haproxy.wait_state, "node1", "UP")
    assert node1.admin("/readyz")["ready"] is True


async def test_a_hung_node_is_taken_out_and_the_senders_it_held_go_on_through_the_others(
        two_nodes: Cluster) -> None:
    """SIGSTOP: the process lives and keeps its sockets; `/readyz` times out, HAProxy marks it DOWN and
    closes the MLLP connections it held (`on-marked-down shutdown-sessions`), senders resend elsewhere."""
    node1, node2 = two_nodes.nodes
    ids = [f"G{i}" for i in range(120)]
    enough = asyncio.Event()
    load = asyncio.create_task(send_load(two_nodes.haproxy.mllp_port, ids, connections=4, started=enough,
                                         after=20))
    await asyncio.wait_for(enough.wait(), 30)
    two_nodes.hang(node1)
    try:
        await asyncio.to_thread(two_nodes.haproxy.wait_state, "node1", "DOWN")
        outcome = await asyncio.wait_for(load, 60)
    finally:
        two_nodes.hang(node1, resume=True)

    assert sorted(outcome.acked) == sorted(ids), two_nodes.log_tails()
    assert outcome.lost > 0, "the hung node held connections with frames in flight"
    assert set(ids) - stored_control_ids(node1) <= stored_control_ids(node2)


async def test_a_haproxy_restart_mid_load_costs_resends_not_messages(two_nodes: Cluster) -> None:
    ids = [f"P{i}" for i in range(120)]
    enough = asyncio.Event()
    load = asyncio.create_task(send_load(two_nodes.haproxy.mllp_port, ids, connections=4, started=enough,
                                         after=30))
    await asyncio.wait_for(enough.wait(), 30)
    await asyncio.to_thread(two_nodes.haproxy.stop)  # SIGKILL: every connection through it drops
    await asyncio.to_thread(two_nodes.haproxy.start)
    outcome = await asyncio.wait_for(load, 60)

    assert sorted(outcome.acked) == sorted(ids) and outcome.lost > 0
    stored = [stored_control_ids(n) for n in two_nodes.nodes]
    assert set(ids) <= stored[0] | stored[1]


async def test_draining_a_node_mid_load_by_stopping_its_channel_costs_resends_not_messages(
        two_nodes: Cluster) -> None:
    """docs/cluster.md "Drain": the channel stop lets commits in flight finish and ACK, closes the
    connections, `/readyz` fails, and the senders go on through the other node."""
    node1, node2 = two_nodes.nodes
    ids = [f"R{i}" for i in range(120)]
    enough = asyncio.Event()
    load = asyncio.create_task(send_load(two_nodes.haproxy.mllp_port, ids, connections=4, started=enough,
                                         after=30))
    await asyncio.wait_for(enough.wait(), 30)
    await asyncio.to_thread(node1.admin, "/channels/lab/stop", "POST")
    outcome = await asyncio.wait_for(load, 60)

    assert sorted(outcome.acked) == sorted(ids) and outcome.lost > 0
    assert set(ids) <= stored_control_ids(node1) | stored_control_ids(node2)
