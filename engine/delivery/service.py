"""Outbound delivery: durable rows written with the mapped result, one worker per destination.

`record()` runs inside the pipeline's outcome transaction: each routed record (or, for pass-through
routes, the original message) becomes one `queued` row per destination, and a route that failed becomes
a `mapping` dead letter, atomically with the message's outcome. After the commit the pipeline calls
`wake()` and the destination's `DestinationWorker` (engine/delivery/worker.py) sends it. On start, queued
rows simply resume. A housekeeping task keeps `/status` counts and gauges fresh and prunes sent
payloads and raw messages after `engine.store.retention_days`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from channels.base import Outbound
from engine.cluster import Cluster, LocalCluster, Singleton, default_node_id, export_singleton, fifo_singleton
from engine.config import DestinationConfig
from engine.delivery import outbox
from engine.delivery.worker import DestinationWorker
from engine.errors import StoreError
from engine.metrics import Metrics
from engine.store import messages
from engine.store.connection import Connection
from engine.store.sqlite import Store
from engine.types import JSON, DeadLetterKind, DestinationState, RouteResult, StoredMessage

if TYPE_CHECKING:
    from engine.datasets.registry import DatasetRegistry
    from engine.types import Routed

REFRESH_EVERY = 1.0
"""Seconds between refreshes of the per-destination counts shown in `/status` (when something changed)."""
PRUNE_EVERY = 3600.0
"""Seconds between retention runs."""
JSON_CONTENT_TYPE = "application/json"

log = structlog.get_logger("yonglink.delivery")


PATH_KEYS = frozenset({"dir", "ca_file", "cert_file", "key_file"})
"""Destination settings that name files or directories; relative ones resolve against the config file."""


def resolve_paths(settings: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A copy of `settings` with relative PATH_KEYS values made absolute under `base` (nested too)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            out[key] = resolve_paths(value, base)
        elif key in PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute():
            out[key] = str(base / value)
        else:
            out[key] = value
    return out


class DeliveryService:
    """Creates delivery rows inside the pipeline's transaction and runs one worker per destination.

    Receives what it uses: the destinations, the store, the metrics, the connector classes by config
    `type` (channels/__init__.py `outbound_types`), the directory relative paths resolve against, the
    retention age, and `registry`, which supplies the dataset registry for `keys: de` destinations.
    `cluster` (engine/cluster/) says which rows this node claims, whether it prunes (a singleton), which
    FIFO and export destinations it runs, and carries wake-ups between nodes.
    """

    def __init__(self, *, destinations: Sequence[DestinationConfig], store: Store, metrics: Metrics,
                 outbound_types: Mapping[str, type[Outbound]], config_dir: Path, retention_days: float,
                 registry: Callable[[], DatasetRegistry], facility: str = "YONGLINK",
                 cluster: Cluster | None = None) -> None:
        self.store = store
        self.cluster = cluster or LocalCluster(node_id=default_node_id())
        self.facility = facility
        self.metrics = metrics
        self.outbound_types = outbound_types
        self.config_dir = config_dir
        self.retention_days = retention_days
        self._load_registry = registry
        self.destinations: dict[str, DestinationConfig] = {d.name: d for d in destinations}
        self.workers: dict[str, DestinationWorker] = {}
        self._counts: dict[str, dict[str, Any]] = {}
        self._sent_at_start: dict[str, int] = {}
        self._dirty = asyncio.Event()
        self._registry: DatasetRegistry | None = None
        self._house: asyncio.Task[None] | None = None
        for dest in destinations:  # before the cluster starts: its first heartbeat contends for them
            if dest.options.get("ordering", "parallel") == "fifo":
                self.cluster.want(fifo_singleton(dest.name))
            cls = outbound_types.get(dest.type)
            if cls is not None and cls.SCHEDULED:  # e.g. export periods: written by one node of a cluster
                self.cluster.want(export_singleton(dest.name))

    # --- inside the pipeline's transaction --------------------------------------------------------

    def record(self, conn: Connection, message: StoredMessage, results: list[RouteResult],
               now: float) -> set[str]:
        """Queue a delivery per (result, destination); return the destinations to `wake()` after commit."""
        return {row.destination for row in self.record_many(conn, [(message, results)], now)}

    def record_many(self, conn: Connection, outcomes: Sequence[Routed],
                    now: float) -> list[outbox.Pending]:
        """Queue a delivery per (result, destination) for a batch of messages in one statement;
        dead-letter failed routes and unknown destinations. Returns the rows now queued, for
        `hand_over()` after the commit (a worker then sends them without reading them back)."""
        rows: list[outbox.NewDelivery] = []
        for message, results in outcomes:
            for r in results:
                if r.error:
                    outbox.add_dead_letter(conn, kind=DeadLetterKind.MAPPING, message_id=message.id,
                                          channel=message.channel, route_id=r.route_id, dataset=r.dataset,
                                          error=r.error, now=now)
                    continue
                if r.record is None and not r.passthrough:
                    continue
                for name in r.destinations:
                    row = self._new_delivery(conn, message, r, name, now)
                    if row is not None:
                        rows.append(row)
        return outbox.enqueue_many(conn, rows, now=now) if rows else []

    def _new_delivery(self, conn: Connection, message: StoredMessage, r: RouteResult, name: str,
                      now: float) -> outbox.NewDelivery | None:
        dest = self.destinations.get(name)
        if dest is None:
            outbox.add_dead_letter(
                conn, kind=DeadLetterKind.MAPPING, message_id=message.id, channel=message.channel,
                route_id=r.route_id, dataset=r.dataset, destination=name, now=now,
                error=f"route {r.route_id} names unknown destination {name!r}")
            return None
        try:
            payload, ctype, order_value = self._payload(conn, message, r, dest)
        except Exception as exc:  # e.g. a record that cannot be re-keyed by DE id
            outbox.add_dead_letter(
                conn, kind=DeadLetterKind.MAPPING, message_id=message.id, channel=message.channel,
                route_id=r.route_id, dataset=r.dataset, destination=name, now=now,
                error=f"cannot build payload for {name}: {type(exc).__name__}: {exc}")
            return None
        return outbox.NewDelivery(message_id=message.id, destination=name, route_id=r.route_id,
                                 dataset=r.dataset, channel=message.channel, payload=payload,
                                 content_type=ctype, order_value=order_value)

    def _payload(self, conn: Connection, message: StoredMessage, r: RouteResult,
                 dest: DestinationConfig) -> tuple[bytes, str, str | None]:
        if r.passthrough or r.record is None:
            raw = message.raw
            if raw is None:
                row = conn.execute("SELECT raw FROM messages WHERE id = ?", (message.id,)).fetchone()
                raw = row[0] if row else None
            if raw is None:
                raise ValueError("the raw message is no longer stored")
            return bytes(raw), message.content_type, None
        record: JSON = r.record
        order_key = dest.options.get("order_key")
        order_value = record.get(order_key) if order_key else None
        if dest.options.get("keys") == "de" and r.dataset:
            record = self.registry().to_de_keys(r.dataset, record)
        return (orjson.dumps(record), JSON_CONTENT_TYPE,
                None if order_value is None else str(order_value))

    def registry(self) -> DatasetRegistry:
        """The dataset registry for `keys: de` destinations (loaded once, on first use)."""
        if self._registry is None:
            self._registry = self._load_registry()
        return self._registry

    # --- after the commit -------------------------------------------------------------------------

    def wake(self, destinations: set[str]) -> None:
        """After the commit, on the event loop (`record` runs on the store's writer thread)."""
        self._dirty.set()
        for name in destinations:
            worker = self.workers.get(name)
            if worker is not None:
                worker.wake()

    def hand_over(self, rows: Sequence[outbox.Pending]) -> None:
        """After the commit of `record_many`: give each destination's worker its new rows in memory;
        a FIFO destination another node sends is woken there (`Cluster.notify_wake`)."""
        self._dirty.set()
        by_destination: dict[str, list[outbox.Pending]] = {}
        for row in rows:
            by_destination.setdefault(row.destination, []).append(row)
        elsewhere = []
        for name, found in by_destination.items():
            worker = self.workers.get(name)
            if worker is not None:
                if worker.may_send is not None and not worker.may_send():
                    elsewhere.append(name)
                    continue
                worker.offer(found)
        if elsewhere:
            self.cluster.notify_wake(elsewhere)

    def refresh_soon(self) -> None:
        """Counts changed outside the workers (replay, purge): refresh `/status` promptly."""
        self._dirty.set()

    async def start(self) -> None:
        """Start a worker per enabled destination; queued rows (also those in flight at a crash) resume."""
        if any(d.options.get("keys") == "de" for d in self.destinations.values()):
            self.registry()  # load now, not on the store's writer thread inside a transaction
        types = self.outbound_types
        for name, dest in self.destinations.items():
            if dest.options.get("enabled", True) is False:
                continue
            cls = types.get(dest.type)
            error = None if cls is not None else f"no connector for destination type {dest.type!r}"
            settings = resolve_paths(dest.settings, self.config_dir)
            outbound = cls(name=name, settings=settings) if cls is not None else None
            if outbound is not None:
                # e.g. export keeps its records in the store (Outbound.use_store: a no-op by default)
                outbound.use_store(store=self.store, registry=self.registry(), facility=self.facility)
                overrides = (dest.options.get("retry") or {}).get("status_overrides") or {}
                outbound.use_status_overrides({int(k): str(v) for k, v in overrides.items()})
                if outbound.SCHEDULED:
                    outbound.use_leader(functools.partial(self.cluster.holds, export_singleton(name)))
            worker = DestinationWorker(config=dest, outbound=outbound, store=self.store,
                                       metrics=self.metrics, connector_error=error,
                                       on_change=self._dirty.set, owner=self.cluster.owner,
                                       may_send=self._fifo_gate(dest))
            self.workers[name] = worker
            await worker.start()
        self.cluster.on_wake(self.wake)
        self.cluster.on_holdings(self._holdings_changed)
        self._sent_at_start = await self.store.read(outbox.sent_counts)
        await self._refresh()
        self._house = asyncio.create_task(self._housekeeping(), name="yonglink-delivery-housekeeping")

    def _fifo_gate(self, dest: DestinationConfig) -> Callable[[], bool] | None:
        """A FIFO destination is sent by the node holding its singleton (its order holds across nodes)."""
        if dest.options.get("ordering", "parallel") != "fifo":
            return None
        return functools.partial(self.cluster.holds, fifo_singleton(dest.name))

    def _holdings_changed(self, name: str, held: bool) -> None:
        """A FIFO singleton came to this node: claim that destination's queue now."""
        kind, _, destination = name.partition(":")
        if held and kind == "fifo":
            self.wake({destination})

    async def stop(self) -> None:
        if self._house is not None:
            self._house.cancel()
            await asyncio.gather(self._house, return_exceptions=True)
            self._house = None
        await asyncio.gather(*(w.stop() for w in self.workers.values()))
        self.workers.clear()

    async def _housekeeping(self) -> None:
        next_prune = time.time() + 60.0
        while True:
            try:
                await asyncio.wait_for(self._dirty.wait(), PRUNE_EVERY)
            except TimeoutError:
                pass
            self._dirty.clear()
            started = time.monotonic()
            try:
                await self._refresh()
                if time.time() >= next_prune and self.cluster.holds(Singleton.RETENTION):
                    next_prune = time.time() + PRUNE_EVERY
                    await self.prune()
            except StoreError as exc:
                log.error("delivery housekeeping failed", error=str(exc))
            # a huge backlog makes the count slow: refresh less often rather than steal CPU from sending
            await asyncio.sleep(max(REFRESH_EVERY, 20 * (time.monotonic() - started)))

    async def _refresh(self) -> None:
        self._counts = await self.store.read(outbox.destination_counts)
        for name, worker in self.workers.items():
            self._counts.setdefault(name, {})["sent"] = self._sent_at_start.get(name, 0) + worker.sent
        m = self.metrics
        for name in self.destinations:
            c = self._counts.get(name, {})
            m.queue_depth.labels(name).set(c.get("queued", 0))
            m.dead_letters.labels(name).set(c.get("dead_letters", 0))

    async def prune(self, now: float | None = None) -> tuple[int, int]:
        """Drop sent payloads and raw messages older than the retention age; dead letters stay."""
        days = self.retention_days
        cutoff = (time.time() if now is None else now) - days * 86400.0

        def run(conn: Connection) -> tuple[int, int]:
            return outbox.prune(conn, older_than=cutoff), messages.prune(conn, older_than=cutoff)

        payloads, raws = await self.store.write(run)
        if payloads or raws:
            log.info("retention pruned", payloads=payloads, raw_messages=raws, days=days)
        return payloads, raws

    def status(self) -> list[dict[str, Any]]:
        """Per destination: state (ok | down | blocked), counts, oldest queued age, last error (or when it
        recovered), when the next probe is due and when the oldest item will be dead-lettered."""
        now = time.time()
        out = []
        for name, dest in self.destinations.items():
            c = self._counts.get(name, {})
            worker = self.workers.get(name)
            info = worker.describe() if worker else {
                "name": name, "type": dest.type, "state": DestinationState.DISABLED, "in_flight": 0,
                "blocked_message_id": None, "last_error": None,
                "down_since": None, "recovered_at": None, "next_probe_at": None}
            oldest = c.get("oldest_queued")
            # when the oldest queued item will be dead-lettered if nothing gets through: its creation
            # plus the policy's retry budget (engine/delivery/retry.py retry_budget)
            failing = info["state"] == DestinationState.DOWN or c.get("retrying", 0) > 0
            due = oldest + worker.budget if worker and oldest and failing else None
            info.update(queued=c.get("queued", 0), retrying=c.get("retrying", 0), sent=c.get("sent", 0),
                        dead=c.get("dead", 0), dead_letters=c.get("dead_letters", 0),
                        oldest_queued_age_seconds=round(now - oldest, 3) if oldest else None,
                        dead_letter_due_at=due)
            out.append(info)
        return out
