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
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from channels import outbound_types
from engine.config import DestinationConfig
from engine.delivery import outbox
from engine.delivery.worker import DestinationWorker
from engine.errors import StoreError
from engine.store import messages
from engine.types import JSON, RouteResult, StoredMessage

if TYPE_CHECKING:
    from engine.datasets.registry import DatasetRegistry
    from engine.pipeline import Routed
    from engine.runtime import Engine

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
    """Creates delivery rows inside the pipeline's transaction and runs one worker per destination."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.destinations: dict[str, DestinationConfig] = {d.name: d for d in engine.config.destinations}
        self.workers: dict[str, DestinationWorker] = {}
        self._counts: dict[str, dict[str, Any]] = {}
        self._sent_at_start: dict[str, int] = {}
        self._dirty = asyncio.Event()
        self._registry: DatasetRegistry | None = None
        self._house: asyncio.Task[None] | None = None

    def ddl(self) -> list[str]:
        """The outbox tables, and those of configured connectors that keep their own (class `DDL`)."""
        types = outbound_types()
        own = {str(getattr(types.get(d.type), "DDL", "")) for d in self.destinations.values()}
        return [outbox.DDL, *sorted(d for d in own if d)]

    # --- inside the pipeline's transaction --------------------------------------------------------

    def record(self, conn: sqlite3.Connection, message: StoredMessage, results: list[RouteResult],
               now: float) -> set[str]:
        """Queue a delivery per (result, destination); return the destinations to `wake()` after commit."""
        return {row.destination for row in self.record_many(conn, [(message, results)], now)}

    def record_many(self, conn: sqlite3.Connection, outcomes: Sequence[Routed],
                    now: float) -> list[outbox.Pending]:
        """Queue a delivery per (result, destination) for a batch of messages in one statement;
        dead-letter failed routes and unknown destinations. Returns the rows now queued, for
        `hand_over()` after the commit (a worker then sends them without reading them back)."""
        rows: list[outbox.NewDelivery] = []
        for message, results in outcomes:
            for r in results:
                if r.error:
                    outbox.add_dead_letter(conn, kind="mapping", message_id=message.id,
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

    def _new_delivery(self, conn: sqlite3.Connection, message: StoredMessage, r: RouteResult, name: str,
                      now: float) -> outbox.NewDelivery | None:
        dest = self.destinations.get(name)
        if dest is None:
            outbox.add_dead_letter(
                conn, kind="mapping", message_id=message.id, channel=message.channel,
                route_id=r.route_id, dataset=r.dataset, destination=name, now=now,
                error=f"route {r.route_id} names unknown destination {name!r}")
            return None
        try:
            payload, ctype, order_value = self._payload(conn, message, r, dest)
        except Exception as exc:  # e.g. a record that cannot be re-keyed by DE id
            outbox.add_dead_letter(
                conn, kind="mapping", message_id=message.id, channel=message.channel,
                route_id=r.route_id, dataset=r.dataset, destination=name, now=now,
                error=f"cannot build payload for {name}: {type(exc).__name__}: {exc}")
            return None
        return outbox.NewDelivery(message_id=message.id, destination=name, route_id=r.route_id,
                                 dataset=r.dataset, channel=message.channel, payload=payload,
                                 content_type=ctype, order_value=order_value)

    def _payload(self, conn: sqlite3.Connection, message: StoredMessage, r: RouteResult,
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
        """The dataset registry (the router's when it has one) for `keys: de` destinations."""
        if self._registry is None:
            router = self.engine.router
            found = getattr(router, "datasets", None) or getattr(router, "registry", None)
            if found is None:
                from engine.datasets.registry import DatasetRegistry

                found = DatasetRegistry.load(self.engine.config.engine.schemas_dir)
            self._registry = found
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
        """After the commit of `record_many`: give each destination's worker its new rows in memory."""
        self._dirty.set()
        by_destination: dict[str, list[outbox.Pending]] = {}
        for row in rows:
            by_destination.setdefault(row.destination, []).append(row)
        for name, found in by_destination.items():
            worker = self.workers.get(name)
            if worker is not None:
                worker.offer(found)

    def refresh_soon(self) -> None:
        """Counts changed outside the workers (replay, purge): refresh `/status` promptly."""
        self._dirty.set()

    async def start(self) -> None:
        """Start a worker per enabled destination; queued rows (also those in flight at a crash) resume."""
        if any(d.options.get("keys") == "de" for d in self.destinations.values()):
            self.registry()  # load now, not on the store's writer thread inside a transaction
        types = outbound_types()
        for name, dest in self.destinations.items():
            if dest.options.get("enabled", True) is False:
                continue
            cls = types.get(dest.type)
            error = None if cls is not None else f"no connector for destination type {dest.type!r}"
            settings = resolve_paths(dest.settings, self.engine.config.file.resolve().parent)
            extra: dict[str, Any] = {}
            if getattr(cls, "uses_store", False):  # e.g. export: keeps its records in the store
                extra = {"store": self.engine.store, "registry": self.registry(),
                         "facility": self.engine.config.engine.facility}
            outbound = cls(name=name, settings=settings, **extra) if cls is not None else None
            if outbound is not None and hasattr(outbound, "status_overrides"):
                overrides = (dest.options.get("retry") or {}).get("status_overrides") or {}
                outbound.status_overrides = {int(k): v for k, v in overrides.items()}
            worker = DestinationWorker(config=dest, outbound=outbound, store=self.engine.store,
                                       metrics=self.engine.metrics, connector_error=error)
            worker.on_change = self._dirty.set
            self.workers[name] = worker
            await worker.start()
        self._sent_at_start = await self.engine.store.read(outbox.sent_counts)
        await self._refresh()
        self._house = asyncio.create_task(self._housekeeping(), name="yonglink-delivery-housekeeping")

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
                if time.time() >= next_prune:
                    next_prune = time.time() + PRUNE_EVERY
                    await self.prune()
            except StoreError as exc:
                log.error("delivery housekeeping failed", error=str(exc))
            # a huge backlog makes the count slow: refresh less often rather than steal CPU from sending
            await asyncio.sleep(max(REFRESH_EVERY, 20 * (time.monotonic() - started)))

    async def _refresh(self) -> None:
        self._counts = await self.engine.store.read(outbox.destination_counts)
        for name, worker in self.workers.items():
            self._counts.setdefault(name, {})["sent"] = self._sent_at_start.get(name, 0) + worker.sent
        m = self.engine.metrics
        for name in self.destinations:
            c = self._counts.get(name, {})
            m.queue_depth.labels(name).set(c.get("queued", 0))
            m.dead_letters.labels(name).set(c.get("dead_letters", 0))

    async def prune(self, now: float | None = None) -> tuple[int, int]:
        """Drop sent payloads and raw messages older than the retention age; dead letters stay."""
        days = self.engine.config.engine.store.retention_days
        cutoff = (time.time() if now is None else now) - days * 86400.0

        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            return outbox.prune(conn, older_than=cutoff), messages.prune(conn, older_than=cutoff)

        payloads, raws = await self.engine.store.write(run)
        if payloads or raws:
            log.info("retention pruned", payloads=payloads, raw_messages=raws, days=days)
        return payloads, raws

    def status(self) -> list[dict[str, Any]]:
        """Per destination: state (ok | down | blocked), counts, oldest queued age, last error."""
        now = time.time()
        out = []
        for name, dest in self.destinations.items():
            c = self._counts.get(name, {})
            worker = self.workers.get(name)
            info = worker.describe() if worker else {
                "name": name, "type": dest.type, "state": "disabled", "in_flight": 0,
                "blocked_message_id": None, "last_error": None}
            oldest = c.get("oldest_queued")
            info.update(queued=c.get("queued", 0), retrying=c.get("retrying", 0), sent=c.get("sent", 0),
                        dead=c.get("dead", 0), dead_letters=c.get("dead_letters", 0),
                        oldest_queued_age_seconds=round(now - oldest, 3) if oldest else None)
            out.append(info)
        return out
