"""Nodes on one real PostgreSQL (tests/support/postgres.py): singletons move when their holder dies or
stops, a NOTIFY reaches the other node with no heartbeat in between, leases of a gone node are taken
over with the same delivery ids, and its `received` messages by the recovery singleton.

Each node here is a `PostgresCluster` alone (the engine-level stories are in test_cluster_engines.py).
A node "dies" with `abandon()`: its connections close without releasing anything, as after `kill -9`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from engine.cluster import Singleton, fifo_singleton
from engine.cluster.base import SelfReport
from engine.cluster.leases import with_session_options
from engine.cluster.postgres import BEAT_TIMEOUT, PostgresCluster
from engine.errors import NodeIdInUse
from engine.store.migrations import apply_postgres

pytestmark = pytest.mark.postgres

HEARTBEAT = 0.2
LEASE = 1.0
BOUND = 10 * LEASE
"""How long a test waits for what a lease makes happen before it fails (not a speed target)."""


def report(version: str = "v1") -> Callable[[], SelfReport]:
    return lambda: SelfReport(config_version=version, admin_url=None, channels=("his-adt",))


async def eventually(check: Callable[[], bool], *, within: float = BOUND) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {within:g} s")
        await asyncio.sleep(0.02)


@pytest.fixture
def schema(pg_dsn: str) -> str:
    """The store's schema (all migrations) on a fresh database; its DSN."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        apply_postgres(conn)
    return pg_dsn


@pytest.fixture
async def nodes(schema: str) -> AsyncIterator[Callable[..., Any]]:
    """Start `PostgresCluster` nodes on the test's database; stop every one afterwards."""
    started: list[PostgresCluster] = []

    async def start(node_id: str, *, heartbeat: float = HEARTBEAT, version: str = "v1",
                    wants: tuple[str, ...] = ()) -> PostgresCluster:
        lease = LEASE if heartbeat < LEASE else 10 * heartbeat  # "no heartbeat during the test"
        node = PostgresCluster(node_id=node_id, dsn=schema, heartbeat=heartbeat, lease=lease)
        for name in wants:
            node.want(name)
        await node.start(report(version))
        started.append(node)
        return node

    yield start
    for node in reversed(started):
        await node.stop()


def queue_deliveries(dsn: str, node_id: str, destination: str, count: int) -> list[str]:
    """Rows as node `node_id`'s pipeline creates them: a plain INSERT on a store connection that carries
    the node's session options (owner and lease come from the column defaults)."""
    ids = [f"d-{node_id}-{i}" for i in range(count)]
    with psycopg.connect(with_session_options(dsn, node_id, LEASE), autocommit=True) as conn:
        for i, delivery_id in enumerate(ids):
            conn.execute("INSERT INTO deliveries (id, message_id, destination, route_id, state, attempts,"
                         " next_attempt_at, created_at, content_type, payload)"
                         " VALUES (%s, %s, %s, 'r', 'queued', 0, 0, 0, 'application/json', %s)",
                         (delivery_id, f"m-{node_id}-{i}", destination, b"{}"))
    return ids


def owners(dsn: str) -> dict[str, str | None]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT id, owner FROM deliveries").fetchall())


async def test_a_singleton_moves_to_the_other_node_when_its_holder_dies(nodes: Callable[..., Any]) -> None:
    a = await nodes("node-a")
    b = await nodes("node-b")
    assert a.holds(Singleton.RETENTION) and not b.holds(Singleton.RETENTION)
    await a.abandon()
    await eventually(lambda: b.holds(Singleton.RETENTION))
    assert b.holds(Singleton.RECOVERY) and b.holds(Singleton.HISTORY)


async def test_a_fifo_destination_moves_when_its_holder_stops_and_the_new_holder_is_told(
        nodes: Callable[..., Any]) -> None:
    a = await nodes("node-a", wants=(fifo_singleton("cdr"),))
    b = await nodes("node-b", wants=(fifo_singleton("cdr"),))
    taken: list[tuple[str, bool]] = []
    b.on_holdings(lambda name, held: taken.append((name, held)))
    assert a.holds(fifo_singleton("cdr")) and not b.holds(fifo_singleton("cdr"))
    await a.stop()
    await eventually(lambda: b.holds(fifo_singleton("cdr")))
    assert (fifo_singleton("cdr"), True) in taken


async def test_a_wake_up_reaches_the_other_node_without_waiting_for_a_heartbeat(
        nodes: Callable[..., Any]) -> None:
    a = await nodes("node-a", heartbeat=60.0)
    b = await nodes("node-b", heartbeat=60.0)  # no heartbeat runs during this test: only NOTIFY can wake
    woken: list[set[str]] = []
    b.on_wake(woken.append)
    await asyncio.wait_for(b.listening.wait(), BOUND)
    woken.clear()  # the wake-up every (re)connect of the listen connection makes
    a.notify_wake({"cdr"})
    await eventually(lambda: {"cdr"} in woken)
    assert b.beats == 1  # the one at start: nothing polled


async def test_a_node_ignores_its_own_wake_up(nodes: Callable[..., Any]) -> None:
    a = await nodes("node-a", heartbeat=60.0)
    b = await nodes("node-b", heartbeat=60.0)
    mine: list[set[str]] = []
    theirs: list[set[str]] = []
    a.on_wake(mine.append)
    b.on_wake(theirs.append)
    await asyncio.wait_for(a.listening.wait(), BOUND)
    await asyncio.wait_for(b.listening.wait(), BOUND)
    mine.clear()
    a.notify_wake({"cdr"})
    await eventually(lambda: {"cdr"} in theirs)
    assert {"cdr"} not in mine


async def test_a_reload_announced_by_one_node_reaches_the_other(nodes: Callable[..., Any]) -> None:
    a = await nodes("node-a", heartbeat=60.0)
    b = await nodes("node-b", heartbeat=60.0)
    announced: list[str] = []

    async def on_reload(version: str) -> None:
        announced.append(version)

    b.on_reload(on_reload)
    await asyncio.wait_for(b.listening.wait(), BOUND)
    a.notify_reload("c0ffee000001")
    await eventually(lambda: announced == ["c0ffee000001"])


async def test_deliveries_of_a_dead_node_are_taken_over_with_their_ids_after_the_lease(
        nodes: Callable[..., Any], schema: str) -> None:
    a = await nodes("node-a")
    b = await nodes("node-b")
    ids = queue_deliveries(schema, "node-a", "lab-sink", 3)
    woken: list[set[str]] = []
    b.on_wake(woken.append)
    await asyncio.sleep(3 * LEASE)  # node-a alive: its heartbeat renews the leases, nobody takes them
    assert set(owners(schema).values()) == {"node-a"}
    await a.abandon()
    await eventually(lambda: {"lab-sink"} in woken)  # node-b's workers of that destination are woken
    assert owners(schema) == dict.fromkeys(ids, "node-b")


async def test_a_node_that_has_not_beaten_for_a_lease_leaves_expired_leases_alone(
        nodes: Callable[..., Any], schema: str) -> None:
    """After a database outage a node back first must not take the rows of one not back yet: it takes
    over only after a lease of its own steady heartbeats."""
    queue_deliveries(schema, "node-a", "lab-sink", 2)
    with psycopg.connect(schema, autocommit=True) as conn:  # node-a's leases ran out during the outage
        conn.execute("UPDATE deliveries SET lease_until = 1")
    b = await nodes("node-b", heartbeat=60.0)
    await b.beat()
    assert set(owners(schema).values()) == {"node-a"}


async def test_a_node_that_stops_cleanly_hands_its_deliveries_over_at_once(
        nodes: Callable[..., Any], schema: str) -> None:
    a = await nodes("node-a")
    b = await nodes("node-b", heartbeat=60.0)
    queue_deliveries(schema, "node-a", "lab-sink", 2)
    await a.stop()
    await b.beat()  # the next heartbeat of node-b, whenever it comes: no lease to wait out
    assert set(owners(schema).values()) == {"node-b"}


async def test_received_messages_of_a_dead_node_go_to_the_recovery_singleton(
        nodes: Callable[..., Any], schema: str) -> None:
    a = await nodes("node-a")
    rescans: list[bool] = []
    with psycopg.connect(with_session_options(schema, "node-b", LEASE), autocommit=True) as conn:
        conn.execute("INSERT INTO messages (id, channel, received_at, content_type, state)"
                     " VALUES ('m-1', 'his-adt', 0, 'text/plain', 'received')")
    a.on_orphans(lambda: rescans.append(True))
    # node-b never had a heartbeat: after a's next beat the message is a's to map
    await eventually(lambda: bool(rescans))
    with psycopg.connect(schema) as conn:
        assert conn.execute("SELECT owner FROM messages WHERE id = 'm-1'").fetchone() == ("node-a",)


async def test_status_lists_every_node_with_its_config_version(nodes: Callable[..., Any]) -> None:
    a = await nodes("node-a", version="v1")
    await nodes("node-b", version="v2")
    await a.beat()
    listed = {n["id"]: n for n in a.describe()["nodes"]}
    assert {k: v["config_version"] for k, v in listed.items()} == {"node-a": "v1", "node-b": "v2"}
    assert listed["node-a"]["channels"] == ["his-adt"]
    assert "retention" in listed["node-a"]["singletons"]
    assert listed["node-b"]["singletons"] == []


async def test_after_a_postgresql_restart_nodes_take_singletons_again_and_wake_ups_flow(
        nodes: Callable[..., Any], postgres_server: Any) -> None:
    a = await nodes("node-a")
    b = await nodes("node-b")
    woken: list[set[str]] = []
    b.on_wake(woken.append)
    await asyncio.wait_for(b.listening.wait(), BOUND)
    postgres_server.stop()
    try:
        await eventually(lambda: not a.holds(Singleton.RETENTION) and not b.listening.is_set())
    finally:
        postgres_server.start()
    await eventually(lambda: a.holds(Singleton.RETENTION) != b.holds(Singleton.RETENTION))
    await eventually(b.listening.is_set)
    a.notify_wake({"cdr"})
    await eventually(lambda: {"cdr"} in woken)


async def test_a_second_live_process_with_the_same_node_id_is_refused_with_a_clear_error(
        schema: str, nodes: Callable[..., Any]) -> None:
    await nodes("ward-7")
    with psycopg.connect(schema, autocommit=True) as conn:  # as if ward-7 ran on another machine
        conn.execute("UPDATE nodes SET host = 'other-host' WHERE id = 'ward-7'")
    twin = PostgresCluster(node_id="ward-7", dsn=schema, heartbeat=HEARTBEAT, lease=LEASE)
    with pytest.raises(NodeIdInUse, match=r"ward-7.*other-host"):
        await twin.start(report())


async def test_a_node_restarted_with_its_id_after_its_process_died_starts_at_once(schema: str) -> None:
    with psycopg.connect(schema, autocommit=True) as conn:  # ward-7's last process, killed a moment ago
        conn.execute("INSERT INTO nodes (id, host, pid, started_at, heartbeat_at, config_version, state)"
                     " VALUES ('ward-7', %s, 2147483000, 0, extract(epoch from clock_timestamp()), 'v1',"
                     " 'running')", (socket.gethostname(),))
    node = PostgresCluster(node_id="ward-7", dsn=schema, heartbeat=HEARTBEAT, lease=LEASE)
    await node.start(report())
    try:
        [me] = [n for n in node.describe()["nodes"] if n["id"] == "ward-7"]
        assert me["pid"] == os.getpid()
        with psycopg.connect(schema) as conn:
            assert conn.execute("SELECT pid FROM nodes WHERE id = 'ward-7'").fetchone() == (os.getpid(),)
    finally:
        await node.stop()


async def test_a_node_whose_heartbeat_hangs_gives_its_singletons_up(
        nodes: Callable[..., Any], schema: str) -> None:
    """A heartbeat stuck on the database (here: a lock another session holds on the node's row) fails
    after BEAT_TIMEOUT: the node closes its session, PostgreSQL frees its locks, another node takes them."""
    a = await nodes("node-a")
    b = await nodes("node-b")
    assert a.holds(Singleton.RETENTION)
    with psycopg.connect(schema) as blocker:
        blocker.execute("SELECT 1 FROM nodes WHERE id = 'node-a' FOR UPDATE")  # held until rollback
        await eventually(lambda: b.holds(Singleton.RETENTION), within=3 * BEAT_TIMEOUT)
        assert not a.holds(Singleton.RETENTION)
        blocker.rollback()


async def test_a_node_stops_while_postgresql_is_away(schema: str, postgres_server: Any) -> None:
    """Stopping never waits on the database: the listen connection, reconnecting in a loop, ends too."""
    node = PostgresCluster(node_id="node-a", dsn=schema, heartbeat=HEARTBEAT, lease=LEASE)
    await node.start(report())
    await asyncio.wait_for(node.listening.wait(), BOUND)
    postgres_server.stop()
    try:
        await eventually(lambda: not node.listening.is_set())
        await asyncio.sleep(4 * HEARTBEAT)  # a few reconnect attempts of both connections
        await asyncio.wait_for(node.stop(), BOUND)
    finally:
        postgres_server.start()
