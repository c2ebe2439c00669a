"""What a node says about itself (`NodeInfo`), its states, and the `nodes` table's SQL (PostgreSQL).

Every node upserts its row at start and updates `heartbeat_at` every `engine.cluster.heartbeat`; a node
whose heartbeat is older than `engine.cluster.lease` counts as gone (its delivery leases expire at the
same age, engine/cluster/leases.py). Times in the table are the database server's clock
(`extract(epoch from clock_timestamp())`), so nodes with skewed clocks agree on who is gone.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from psycopg import AsyncConnection


class NodeState(enum.StrEnum):
    """A node's life as the `nodes` table records it."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    """Stopped cleanly: its leases were released at stop."""


def default_node_id() -> str:
    """`<hostname>-<pid>`: unique per process on a host (config `engine.cluster.node_id` overrides)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as `/status` shows it (`cluster.nodes[]`)."""

    id: str
    host: str
    pid: int
    admin_url: str | None
    started_at: float
    heartbeat_age: float
    config_version: str
    state: NodeState
    channels: Sequence[str] = field(default_factory=tuple)
    singletons: Sequence[str] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "admin_url": self.admin_url,
                "started_at": self.started_at, "heartbeat_age": round(self.heartbeat_age, 3),
                "config_version": self.config_version, "state": self.state.value,
                "channels": list(self.channels), "singletons": sorted(self.singletons)}


DB_NOW = "extract(epoch from clock_timestamp())"
"""The database server's clock in epoch seconds (PostgreSQL): the one clock every node's lease uses."""

_UPSERT = (
    "INSERT INTO nodes (id, host, pid, admin_url, started_at, heartbeat_at, config_version, channels,"
    f" singletons, state) VALUES (%s,%s,%s,%s,%s,{DB_NOW},%s,%s,%s,%s)"
    " ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
    " admin_url = excluded.admin_url, started_at = excluded.started_at,"
    " heartbeat_at = excluded.heartbeat_at, config_version = excluded.config_version,"
    " channels = excluded.channels, singletons = excluded.singletons, state = excluded.state")
_HEARTBEAT = (f"UPDATE nodes SET heartbeat_at = {DB_NOW}, config_version = %s, channels = %s,"
              " singletons = %s, state = %s, admin_url = %s WHERE id = %s")
_LISTING = (f"SELECT id, host, pid, admin_url, started_at, {DB_NOW} - heartbeat_at, config_version, state,"
            f" channels, singletons FROM nodes WHERE heartbeat_at > {DB_NOW} - %s ORDER BY id")


def _json(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


async def upsert(conn: AsyncConnection[Any], node: NodeInfo) -> None:
    """Register this node (a restarted node with the same id takes its row over)."""
    await conn.execute(_UPSERT, (node.id, node.host, node.pid, node.admin_url, node.started_at,
                                 node.config_version, _json(node.channels), _json(sorted(node.singletons)),
                                 node.state.value))


async def heartbeat(conn: AsyncConnection[Any], node: NodeInfo) -> bool:
    """One UPDATE per heartbeat: alive, with what this node runs now. False: the row is gone."""
    cur = await conn.execute(_HEARTBEAT, (node.config_version, _json(node.channels),
                                          _json(sorted(node.singletons)), node.state.value, node.admin_url,
                                          node.id))
    return cur.rowcount > 0


async def mark_state(conn: AsyncConnection[Any], node_id: str, state: NodeState) -> None:
    await conn.execute("UPDATE nodes SET state = %s WHERE id = %s", (state.value, node_id))


async def listing(conn: AsyncConnection[Any], *, forget_after: float) -> list[NodeInfo]:
    """Every node seen within `forget_after` seconds (older rows are history, not the cluster)."""
    cur = await conn.execute(_LISTING, (forget_after,))
    return [NodeInfo(id=r[0], host=r[1], pid=r[2], admin_url=r[3], started_at=r[4],
                     heartbeat_age=max(0.0, float(r[5])), config_version=r[6], state=NodeState(r[7]),
                     channels=tuple(orjson.loads(r[8] or "[]")),
                     singletons=tuple(orjson.loads(r[9] or "[]")))
            for r in await cur.fetchall()]


async def holder(conn: AsyncConnection[Any], node_id: str) -> tuple[str, int, float, NodeState] | None:
    """(host, pid, heartbeat age, state) of the row that has `node_id`, if there is one."""
    cur = await conn.execute(f"SELECT host, pid, {DB_NOW} - heartbeat_at, state FROM nodes WHERE id = %s",
                             (node_id,))
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1], float(row[2]), NodeState(row[3]))


def process_alive(pid: int) -> bool:
    """True when a process with this id runs on this host (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
