"""Export destination: collects routed records in the store and writes them out period by period.

`send_batch` only collects: each record is committed to `export_records` (channels/export/records.py)
before the delivery counts as sent, so nothing routed here is lost. A background task writes each
period once it has ended (channels/export/exporter.py) and, once an hour, applies `retention_days`.
The period of a record is the time it reached this destination (after mapping), not a clinical time.

The destination needs the engine's store (and the dataset registry, for CSV headers): its tables are
part of the store's schema (migration 0001); it takes the store through `use_store` (the Outbound hook
the delivery service calls before `start`, engine/delivery/service.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import structlog

from channels.base import Outbound
from channels.export import records
from channels.export.exporter import PeriodExporter
from engine.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
)
from engine.types import DeliveryItem, DeliveryResult

if TYPE_CHECKING:
    from engine.datasets.registry import DatasetRegistry
    from engine.store.sqlite import Store

PRUNE_EVERY = 3600.0
MAX_SLEEP = 30.0

log = structlog.get_logger("yonglink.export")


class ExportOutbound(Outbound):
    """Collects records durably; writes each period's files on the schedule."""

    SCHEDULED: ClassVar[bool] = True
    """Periods are written by one node of a cluster at a time (`use_leader`)."""
    batch_size = 256
    batch_wait = 0.05

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        self._store: Store | None = None
        self._exporter: PeriodExporter | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._is_leader: Callable[[], bool] = lambda: True

    def use_leader(self, is_leader: Callable[[], bool]) -> None:
        """In a cluster, only the node holding this export's singleton writes and prunes periods; every
        node collects records into the shared store (engine/cluster/)."""
        self._is_leader = is_leader

    def use_store(self, *, store: Store, registry: DatasetRegistry | None, facility: str) -> None:
        """The delivery service hands over the engine's store before `start` (channels/base.py)."""
        self._store = store
        self._exporter = PeriodExporter(name=self.name, settings=self.settings, store=store,
                                        registry=registry, facility=facility)

    @property
    def store(self) -> Store:
        if self._store is None:
            raise ConfigError(f"export destination {self.name!r} was started without the engine's store")
        return self._store

    @property
    def exporter(self) -> PeriodExporter:
        if self._exporter is None:
            raise ConfigError(f"export destination {self.name!r} was started without the engine's store")
        return self._exporter

    async def start(self) -> None:
        await self.exporter.prepare()
        self._task = asyncio.create_task(self._run(), name=f"yonglink-export-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def describe(self) -> dict[str, Any]:
        """The export's own part of the destination's `/status` entry."""
        ex = self.exporter
        last = ex.last_written
        return {"export": {
            "dir": str(ex.root), "timezone": ex.timezone,
            "schedule": ex.schedule.describe(),
            "last_period": None if last is None else {
                "start": ex.schedule.iso(last.period.start), "end": ex.schedule.iso(last.period.end),
                "files": len(last.files), "records": sum(f.records for f in last.files)},
            "last_error": None if self.last_error is None else {"at": self.last_error_at,
                                                                "text": self.last_error}}}

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        result = (await self.send_batch([item]))[0]
        if isinstance(result, DeliveryError):
            raise result
        return result

    async def send_batch(self, items: Sequence[DeliveryItem]) -> Sequence[DeliveryResult | DeliveryError]:
        out: list[DeliveryResult | DeliveryError] = []
        rows = []
        for item in items:
            if not item.dataset:
                out.append(PermanentDeliveryError("export takes dataset records only (a pass-through"
                                                  " route sent the original message)"))
                continue
            rows.append(records.Collected(item.delivery_id, item.dataset, self.exporter.org_of(item.payload),
                                          item.payload))
            out.append(DeliveryResult(response="collected"))
        if rows:
            try:
                await self.store.write(functools.partial(records.collect, destination=self.name, rows=rows,
                                                         now=time.time()))
            except StoreError as exc:
                raise TransientDeliveryError(f"cannot keep records for export: {exc}") from None
        return out

    async def _run(self) -> None:
        next_prune = time.time() + 60.0
        while True:
            now = time.time()
            if not self._is_leader():  # another node writes the periods; look again shortly
                await asyncio.sleep(MAX_SLEEP / 10)
                continue
            try:
                await self.exporter.export_due(now)
                if now >= next_prune:
                    next_prune = now + PRUNE_EVERY
                    await self.exporter.prune(now)
                self.last_error = None
            except Exception as exc:  # a full disk, a lost mount: report, retry next pass
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_error_at = time.time()
                log.error("export failed", destination=self.name, error=self.last_error)
            delay = self.exporter.next_due(time.time()) - time.time()
            await asyncio.sleep(min(max(delay, 0.2), MAX_SLEEP))
