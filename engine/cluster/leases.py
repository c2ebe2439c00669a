"""Delivery leases and orphaned messages on PostgreSQL: renew, release, take over (engine/cluster/).

A delivery row is owned by the node whose pipeline created it: `owner` and `lease_until` are column
defaults read from the session settings `yonglink.node_id` and `yonglink.lease`, which the store's
connections carry (`session_options`), so the pipeline's INSERT is unchanged and costs nothing extra.
Each heartbeat renews this node's leases with one UPDATE (only rows within half a lease of expiry, so a
backlog is rewritten every lease/2, not every heartbeat) and takes over expired ones with `FOR UPDATE
SKIP LOCKED` (two nodes reaping at once take disjoint rows); the worker then sends them with the same
delivery id, which the destination sees as the same `Idempotency-Key`: at-least-once.

Messages still `received` (ACKed, not mapped) of a node that is gone (no heartbeat for a lease, or
stopped) are taken over by the holder of the `recovery` singleton and mapped by its pipeline.
All times are the database server's clock (`nodes.DB_NOW`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.cluster.nodes import DB_NOW, NodeState

if TYPE_CHECKING:
    from psycopg import AsyncConnection

REAP_LIMIT = 5000
"""Expired deliveries one node takes over per heartbeat (the rest at the next one, or by other nodes)."""
ORPHAN_LIMIT = 5000
"""`received` messages of gone nodes the recovery singleton takes over per heartbeat."""

NODE_SETTING = "yonglink.node_id"
LEASE_SETTING = "yonglink.lease"


def session_options(node_id: str, lease: float) -> str:
    """The libpq `options` that give every store connection of this node its owner and lease, read by
    the `owner` / `lease_until` column defaults (migration 0002_cluster.postgres.sql)."""
    if not node_id.replace("-", "").replace(".", "").replace("_", "").replace(":", "").isalnum():
        raise ValueError(f"engine.cluster.node_id {node_id!r}: letters, digits and - . _ : only")
    return f"-c {NODE_SETTING}={node_id} -c {LEASE_SETTING}={lease:g}"


def with_session_options(dsn: str, node_id: str, lease: float) -> str:
    """`dsn` with `session_options` added to any `options` it already has."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(dsn).get("options")
    mine = session_options(node_id, lease)
    return make_conninfo(dsn, options=f"{given} {mine}" if given else mine)


async def renew(conn: AsyncConnection[Any], node_id: str, lease: float) -> int:
    """Extend this node's queued deliveries whose lease ends within half a lease; the count renewed.

    Rows the store's writer holds locked (being marked sent right now) are skipped, not waited for: the
    renewal never waits on the writer, so the two cannot deadlock; a skipped row is renewed at the next
    heartbeat if it is still queued then."""
    cur = await conn.execute(
        f"UPDATE deliveries d SET lease_until = {DB_NOW} + %s FROM ("
        "  SELECT seq FROM deliveries WHERE owner = %s AND state = 'queued'"
        f"  AND (lease_until IS NULL OR lease_until < {DB_NOW} + %s) FOR UPDATE SKIP LOCKED) due"
        " WHERE d.seq = due.seq", (lease, node_id, lease / 2))
    return cur.rowcount


async def release(conn: AsyncConnection[Any], node_id: str) -> int:
    """At a clean stop: let other nodes take this node's queued deliveries at once."""
    cur = await conn.execute("UPDATE deliveries SET lease_until = 0 WHERE owner = %s AND state = 'queued'",
                             (node_id,))
    return cur.rowcount


async def reap(conn: AsyncConnection[Any], node_id: str, lease: float, *, released_only: bool = False,
               limit: int = REAP_LIMIT) -> set[str]:
    """Take over queued deliveries whose lease expired (their node is gone); the destinations they
    belong to, whose workers should claim now. `released_only`: only those a node released at a clean
    stop (lease 0), for a node that has not yet beaten steadily for a lease (`PostgresCluster.beat`)."""
    expired = "lease_until <= 0" if released_only else f"(lease_until IS NULL OR lease_until < {DB_NOW})"
    cur = await conn.execute(
        f"UPDATE deliveries d SET owner = %s, lease_until = {DB_NOW} + %s FROM ("
        f"  SELECT seq FROM deliveries WHERE state = 'queued' AND {expired}"
        "  ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) expired"
        " WHERE d.seq = expired.seq RETURNING d.destination", (node_id, lease, limit))
    return {row[0] for row in await cur.fetchall()}


async def adopt_orphans(conn: AsyncConnection[Any], node_id: str, lease: float,
                        limit: int = ORPHAN_LIMIT) -> int:
    """Take over `received` messages whose node is gone (no heartbeat within a lease, or stopped, or
    none recorded); the count taken. Run by the `recovery` singleton only."""
    cur = await conn.execute(
        "UPDATE messages m SET owner = %s FROM ("
        "  SELECT seq FROM messages WHERE state = 'received' AND owner IS DISTINCT FROM %s"
        "  AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = messages.owner AND n.state <> %s"
        f"   AND n.heartbeat_at > {DB_NOW} - %s)"
        "  ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED) gone"
        " WHERE m.seq = gone.seq", (node_id, node_id, NodeState.STOPPED.value, lease, limit))
    return cur.rowcount
