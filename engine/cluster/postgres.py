"""`PostgresCluster`: nodes sharing one PostgreSQL elect singletons, renew leases and wake each other.

Two dedicated connections per node, apart from the store's (engine/store/):
- the *session* connection holds this node's advisory locks (`pg_try_advisory_lock`, session level: a
  node that dies loses them when PostgreSQL sees its connection close) and runs the heartbeat: the
  `nodes` row, lease renewal and take-over (engine/cluster/leases.py), one more try for every singleton
  not held, and the node listing `/status` shows. A heartbeat that fails drops every singleton at once
  (the locks may be gone with the connection) and reconnects at the next beat.
- the *listen* connection (engine/cluster/notify.py) waits for `yonglink_wake` (a FIFO destination
  whose rows another node queued) and `yonglink_reload` (a config version); it reconnects with backoff,
  and after each (re)connect wakes every FIFO destination (PostgreSQL does not replay notifications).

A NOTIFY is sent on the session connection after the commit that queued the rows, not inside it: the
store's transaction is a group commit of many ops, and a wake-up that arrives before the rows are
visible would find nothing. Each payload starts with the sender's node id, so a node ignores its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import structlog

from engine.cluster import leases, nodes
from engine.cluster.base import Cluster, SelfReport, Singleton
from engine.cluster.nodes import NodeInfo, NodeState
from engine.cluster.notify import CONNECT_TIMEOUT, RELOAD_CHANNEL, WAKE_CHANNEL, Listener, cancelling, payload
from engine.errors import NodeIdInUse

if TYPE_CHECKING:
    from psycopg import AsyncConnection

BEAT_TIMEOUT = 5.0
"""Seconds a heartbeat may take at least before it counts as failed (half a lease when that is longer)."""
FORGET_AFTER_LEASES = 20
"""`/status` lists nodes whose heartbeat is younger than this many leases (a dead node stays visible)."""

log = structlog.get_logger("yonglink.cluster")


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of singleton `name`."""
    return int.from_bytes(hashlib.sha256(f"yonglink:{name}".encode()).digest()[:8], "big", signed=True)


class PostgresCluster(Cluster):
    """One node of a cluster on PostgreSQL; `dsn` is the store's (without this node's session options)."""

    def __init__(self, *, node_id: str, dsn: str, heartbeat: float = 2.0, lease: float = 15.0) -> None:
        super().__init__(node_id=node_id, heartbeat=heartbeat, lease=lease)
        self.dsn = dsn
        self._held: set[str] = set()
        self._session: AsyncConnection[Any] | None = None
        self._connecting = asyncio.Lock()  # one session connection, whether a beat or a notify opens it
        self._registered = False  # this session wrote this node's whole row
        self._steady_since: float | None = None  # monotonic time of this session's first good heartbeat
        self._report: Callable[[], SelfReport] = lambda: SelfReport(config_version="", admin_url=None)
        self._state = NodeState.STARTING
        self._started_at = time.time()
        self._nodes: list[NodeInfo] = []
        self._listed_at = time.monotonic()  # when `_nodes` was read: their ages grow from there
        self._beat_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener = Listener(dsn=dsn, node_id=node_id, on_note=self._dispatch,
                                  on_connect=lambda: self._wake_local(self._fifo_destinations()))
        self.listening = self._listener.listening
        """Set while the listen connection is open (tests wait for it before expecting a wake-up)."""
        self.beats = 0
        self._failing_since: float | None = None  # first failed heartbeat of the current outage
        self.reaped = 0
        self.adopted = 0

    # --- what the engine asks ----------------------------------------------------------------------

    @property
    def owner(self) -> str | None:
        return self.node_id

    def holds(self, name: str) -> bool:
        return name in self._held

    def notify_wake(self, destinations: Iterable[str]) -> None:
        for name in sorted(set(destinations)):
            self._spawn(self._notify(WAKE_CHANNEL, name))

    def notify_reload(self, version: str) -> None:
        self._spawn(self._notify(RELOAD_CHANNEL, version))

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self, report: Callable[[], SelfReport]) -> None:
        """Register, take what singletons are free, then beat and listen in the background.

        NodeIdInUse when another live node has this node's id. A database that cannot be reached is
        not an error here: the heartbeat keeps trying (the store says whether it can commit)."""
        self._report = report
        self._started_at = time.time()
        self._state = NodeState.RUNNING
        try:
            await self._check_id_free(await self._ensure_session())
        except NodeIdInUse:
            await self._drop_session(reason=None)
            raise
        except Exception as exc:
            await self._drop_session(reason=f"{type(exc).__name__}: {exc}")
        await self.beat()  # singletons are decided before the workers start: no send before that
        self._beat_task = asyncio.create_task(self._beat_loop(), name="yonglink-cluster-heartbeat")
        self._listen_task = asyncio.create_task(self._listener.run(), name="yonglink-cluster-listen")

    async def stop(self) -> None:
        """Release leases and locks, record the stop: other nodes take over at their next heartbeat."""
        self._state = NodeState.STOPPED
        await self._cancel_tasks()
        conn = self._session
        if conn is not None and not conn.closed:
            try:
                await leases.release(conn, self.node_id)
                await nodes.mark_state(conn, self.node_id, NodeState.STOPPED)
                await conn.execute("SELECT pg_advisory_unlock_all()")
            except Exception as exc:  # the locks go with the connection anyway; leases expire
                log.warning("cluster stop: could not release leases", error=str(exc))
        await self._drop_session(reason=None)

    async def abandon(self) -> None:
        """Stop beating and drop both connections without releasing anything: what a `kill -9` leaves
        behind (locks freed by PostgreSQL, leases left to expire). For tests of a node's death."""
        await self._cancel_tasks()
        await self._drop_session(reason=None)

    async def _cancel_tasks(self) -> None:
        self._listener.stopping = True
        tasks = [t for t in (self._beat_task, self._listen_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._beat_task = self._listen_task = None
        self.listening.clear()
        self._listener.stopping = False  # a later start() listens again

    # --- heartbeat ---------------------------------------------------------------------------------

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat; a failure drops the session (and with it every singleton) until the next.

        A heartbeat that takes longer than `BEAT_TIMEOUT` or half a lease (a connection that hangs)
        counts as failed: the session is closed (PostgreSQL then frees its locks for the other nodes) and
        opened again at the next heartbeat."""
        try:
            await asyncio.wait_for(self._beat(), timeout=max(BEAT_TIMEOUT, self.lease / 2))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # psycopg.Error, OSError, TimeoutError: try again next beat
            await self._drop_session(reason=f"{type(exc).__name__}: {exc}")
            if cancelling():  # psycopg may report a cancelled query as an error of its own
                raise asyncio.CancelledError from exc

    async def _beat(self) -> None:
        conn = await self._ensure_session()
        me = self._me()
        if not self._registered or not await nodes.heartbeat(conn, me):
            await nodes.upsert(conn, me)
            self._registered = True
        await leases.renew(conn, self.node_id, self.lease)
        await self._contend(conn)
        # Take over what looks abandoned only after a lease of steady heartbeats: after a database
        # outage every live node renews its leases at its first heartbeat, and one that came back
        # first must not take the rows of another that has not beaten yet (sent twice). Rows a node
        # released at a clean stop are taken at once.
        steady = self._steady_since is not None and time.monotonic() - self._steady_since >= self.lease
        woken = await leases.reap(conn, self.node_id, self.lease, released_only=not steady)
        if woken:
            self.reaped += 1
            log.warning("took over deliveries of a node that is gone", destinations=sorted(woken))
            self._wake_local(woken)
        if self.holds(Singleton.RECOVERY) and steady:
            adopted = await leases.adopt_orphans(conn, self.node_id, self.lease)
            if adopted:
                self.adopted += adopted
                log.warning("took over received messages of a node that is gone", count=adopted)
                for fn in self._on_orphans:
                    fn()
        self._nodes = await nodes.listing(conn, forget_after=self.lease * FORGET_AFTER_LEASES)
        self._listed_at = time.monotonic()
        self.beats += 1
        if self._steady_since is None:
            self._steady_since = time.monotonic()
        if self._failing_since is not None:
            log.warning("cluster heartbeat back", node=self.node_id,
                        down_seconds=round(time.time() - self._failing_since, 1))
            self._failing_since = None

    async def _check_id_free(self, conn: AsyncConnection[Any]) -> None:
        """Refuse this node's id while another process that has it is alive: a heartbeat younger than a
        lease from another host or pid, unless that pid is gone from this very host (a restart after
        `kill -9` needs no wait)."""
        found = await nodes.holder(conn, self.node_id)
        if found is None:
            return
        host, pid, age, state = found
        me = (socket.gethostname(), os.getpid())
        if state is NodeState.STOPPED or age > self.lease or (host, pid) == me:
            return
        if host == me[0] and not nodes.process_alive(pid):
            return
        raise NodeIdInUse(f"engine.cluster.node_id {self.node_id!r} is in use by process {pid} on {host}"
                          f" (heartbeat {age:.1f} s ago); give each node its own id, or stop that one")

    async def _ensure_session(self) -> AsyncConnection[Any]:
        import psycopg

        async with self._connecting:
            if self._session is not None and not self._session.closed:
                return self._session
            conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True,
                                                         connect_timeout=CONNECT_TIMEOUT,
                                                         application_name=f"yonglink-{self.node_id}")
            self._session = conn
            self._registered = False  # the next heartbeat writes the whole row (host, pid, start)
            return conn

    async def _drop_session(self, *, reason: str | None) -> None:
        """Forget the session connection; every singleton is lost with it. A failed heartbeat is logged
        once per outage (the next one that works says so), not every heartbeat."""
        if reason is not None and self._failing_since is None:
            self._failing_since = time.time()
            log.error("cluster heartbeat failed; singletons released until the database answers",
                      error=reason)
        self._steady_since = None
        lost, self._held = self._held, set()
        for name in sorted(lost):
            self._holdings_changed(name, False)
        conn, self._session = self._session, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), CONNECT_TIMEOUT)

    async def _contend(self, conn: AsyncConnection[Any]) -> None:
        """Try once for every wanted singleton not held (held ones stay held while the session lives)."""
        for name in sorted(self._wanted - self._held):
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
            row = await cur.fetchone()
            if row is not None and row[0]:
                self._held.add(name)
                log.info("singleton taken", singleton=name, node=self.node_id)
                self._holdings_changed(name, True)

    def _holdings_changed(self, name: str, held: bool) -> None:
        for fn in self._on_holdings:
            try:
                fn(name, held)
            except Exception:
                log.exception("singleton callback failed", singleton=name)

    def _me(self) -> NodeInfo:
        report = self._report()
        return NodeInfo(id=self.node_id, host=socket.gethostname(), pid=os.getpid(),
                        admin_url=report.admin_url, started_at=self._started_at, heartbeat_age=0.0,
                        config_version=report.config_version, state=self._state, channels=report.channels,
                        singletons=tuple(self._held))

    # --- notifications -----------------------------------------------------------------------------

    async def _notify(self, channel: str, text: str) -> None:
        """Send one notification (opening the session connection if the last heartbeat lost it). One
        that cannot be sent is logged: the rows wait for the holder's next claim, e.g. when its listen
        connection reconnects, or a take-over."""
        try:
            conn = await self._ensure_session()
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload(self.node_id, text)))
        except Exception as exc:
            log.warning("cluster notify failed", channel=channel, error=str(exc))

    def _dispatch(self, channel: str, sender: str, text: str) -> None:
        """A notification from another node (engine/cluster/notify.py)."""
        if channel == WAKE_CHANNEL:
            self._wake_local({text})
        elif channel == RELOAD_CHANNEL:
            for fn in self._on_reload:
                self._spawn(fn(text))

    def _wake_local(self, destinations: set[str]) -> None:
        for fn in self._on_wake:
            fn(destinations)

    def _fifo_destinations(self) -> set[str]:
        return {name.partition(":")[2] for name in self._wanted if name.startswith("fifo:")}

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- status ------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        since = time.monotonic() - self._listed_at
        listed = {n.id: dataclasses.replace(n, heartbeat_age=n.heartbeat_age + since) for n in self._nodes}
        listed[self.node_id] = self._me()  # this node as it is now, not as of its last heartbeat
        return {"node_id": self.node_id, "backend": "postgres", "heartbeat": self.heartbeat,
                "lease": self.lease, "listening": self.listening.is_set(),
                "nodes": [listed[k].as_dict() for k in sorted(listed)]}
