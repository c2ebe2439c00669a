"""After the ACK: parse, route, map and hand records to delivery, with the outcome committed at once.

The channel has already committed the raw message (state `received`). The pipeline takes messages in
arrival order from an in-memory queue, asks the router for every route's result, and commits the
message's outcome, its mapped records and its delivery rows in *one* transaction, so a crash can neither
lose a delivery nor create it twice. The in-memory queue is bounded: when it overflows, or after a
restart, the pipeline re-reads `received` messages from the store, so a backlog costs disk, not memory.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import structlog

from engine.errors import MappingUnavailable, StoreError
from engine.store import messages
from engine.store.connection import Connection
from engine.types import MessageState, ProcessingOutcome, Routed, RouteFn, RouteResult, StoredMessage

if TYPE_CHECKING:
    from engine.delivery.outbox import Pending
    from engine.delivery.subscriptions import Subscriptions
    from engine.mapping.pool import MappingPool
    from engine.store.sqlite import Store

DEFAULT_QUEUE_SIZE = 10_000
"""Messages held in memory between commit and mapping before the pipeline falls back to the store."""
DEFAULT_BATCH = 256
"""Messages mapped per outcome transaction."""

DEFAULT_SWEEP_INTERVAL = 60.0
"""Seconds between scans of the store for messages left `received` that were never handed to the pipeline
(a commit callback that failed, issue #16): such a message is mapped within this long, not at a restart."""

MAX_SLICE = 0.002
"""Seconds of mapping after which the pipeline yields to the event loop (bounds ACK latency spikes)."""

log = structlog.get_logger("yonglink.pipeline")

__all__ = ["DeliveryRecorder", "Pipeline", "RouteFn", "Routed", "decide"]


class DeliveryRecorder(Protocol):
    """The delivery room's side of the outcome transaction (see engine/delivery/service.py)."""

    def record_many(self, conn: Connection, outcomes: Sequence[Routed],
                    now: float) -> Sequence[Pending]:
        """Write delivery / dead-letter rows inside the pipeline's transaction; return the queued rows."""

    def hand_over(self, rows: Sequence[Pending]) -> None:
        """Called after the commit: the rows are durable, workers may send them."""


def decide(results: list[RouteResult]) -> tuple[MessageState, str | None]:
    """A message is `failed` if any route failed, `mapped` if any produced a record, else `filtered`."""
    errors = [r.error for r in results if r.error]
    if errors:
        return MessageState.FAILED, "; ".join(errors)
    if any(r.record is not None or r.passthrough for r in results):
        return MessageState.MAPPED, None
    reasons = [f"{r.route_id}: {r.filtered}" for r in results if r.filtered]
    return MessageState.FILTERED, "; ".join(reasons) if reasons else messages.NO_ROUTE


class Pipeline:
    """Maps committed messages and records each outcome durably. One instance per engine.

    `route` is called for every message; the engine passes a function that reads its current routing
    state, so a reload switches routes between messages without touching the pipeline.
    """

    def __init__(self, *, store: Store, route: RouteFn, deliveries: DeliveryRecorder,
                 on_outcome: Callable[[StoredMessage, MessageState, list[RouteResult]], None],
                 subscriptions: Subscriptions | None = None, queue_size: int = DEFAULT_QUEUE_SIZE,
                 batch: int = DEFAULT_BATCH, sweep_interval: float = DEFAULT_SWEEP_INTERVAL,
                 owner: str | None = None) -> None:
        self.store = store
        self.owner = owner
        """In a cluster, this node's id: recovery maps the `received` messages this node owns (its own,
        and those the recovery singleton took over from a gone node, engine/cluster/); None: all."""
        self.route = route
        self.deliveries = deliveries
        self.on_outcome = on_outcome
        self.subscriptions = subscriptions
        self.batch = batch
        self.sweep_interval = sweep_interval
        self._next_sweep = 0.0  # monotonic time of the next periodic rescan (set by each scan)
        self._queue: asyncio.Queue[StoredMessage] = asyncio.Queue(maxsize=queue_size)
        self._waiters: dict[str, list[asyncio.Future[ProcessingOutcome]]] = {}
        self._rescan = True  # at start: recover messages accepted before a crash
        self._held: set[str] = set()  # channels whose processing is stopped
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self.backlog_scans = 0
        self.mapper: MappingPool | None = None  # given to start(): map in worker processes

    def submit(self, msg: StoredMessage) -> None:
        """Called right after a message's commit. Never blocks: overflow means "read it back later"."""
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._rescan = True
        self._wakeup.set()

    def rescan(self) -> None:
        """Read `received` messages back from the store now (e.g. a gone node's, just taken over)."""
        self._rescan = True
        self._wakeup.set()

    def hold(self, channel: str, held: bool) -> None:
        """Stop (or resume) mapping a channel's messages; held ones stay `received` in the store."""
        if held:
            self._held.add(channel)
        else:
            self._held.discard(channel)
            self._rescan = True
            self._wakeup.set()

    async def wait(self, message_id: str, timeout: float) -> ProcessingOutcome | None:  # noqa: ASYNC109
        """Resolve when the message's outcome is committed; None after `timeout` seconds."""
        fut: asyncio.Future[ProcessingOutcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(message_id, []).append(fut)
        try:
            # Registered first, then looked up: an outcome committed before this call is read from the
            # store, one committed after it resolves `fut` - no gap in which it could be missed.
            stored = await self.store.read(functools.partial(messages.get, message_id=message_id,
                                                             with_raw=False))
            if stored is not None and stored.state is not MessageState.RECEIVED and not fut.done():
                return ProcessingOutcome(message_id=message_id, state=stored.state, error=stored.error)
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiters.get(message_id)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[message_id]

    def start(self, *, mapper: MappingPool | None = None) -> None:
        """Begin mapping; with `mapper` (`engine.mapping_workers` > 0, started) in worker processes."""
        self.mapper = mapper
        self._task = asyncio.create_task(self._run(), name="yonglink-pipeline")

    async def stop(self) -> None:
        """Finish the batch in progress; messages still queued stay `received` and resume on start."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait until everything queued so far is processed (used by tests and graceful stop)."""
        deadline = time.monotonic() + timeout
        # Polling is fine here: drain runs once at stop (and in tests), never on the hot path.
        while (self._task is not None and (not self._queue.empty() or self._rescan or self._busy)  # noqa: ASYNC110
               and time.monotonic() < deadline):
            await asyncio.sleep(0.01)

    _busy = False

    async def _run(self) -> None:
        while True:
            if self._queue.empty() and not self._rescan:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), max(0.0, self._next_sweep - time.monotonic()))
                except TimeoutError:
                    pass
            if time.monotonic() >= self._next_sweep:
                self._rescan = True  # the periodic sweep: a `received` message nobody submitted
            self._busy = True
            try:
                if self._rescan:  # recovery, overflow, resume or sweep: the store is the source of truth
                    self._rescan = False
                    self._next_sweep = time.monotonic() + self.sweep_interval
                    while not self._queue.empty():  # all committed, so all found again by the scan
                        self._queue.get_nowait()
                    await self._recover()
                    continue
                batch = [self._queue.get_nowait()]
                while len(batch) < self.batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._process([m for m in batch if m.channel not in self._held])
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop the engine; messages stay `received`
                log.exception("pipeline batch failed")
                await asyncio.sleep(1.0)
                self._rescan = True
            finally:
                self._busy = False

    async def _recover(self) -> None:
        after = 0
        while True:
            rows = await self.store.read(functools.partial(messages.unprocessed, after_seq=after,
                                                           limit=self.batch, owner=self.owner))
            if not rows:
                return
            self.backlog_scans += 1
            after = rows[-1][0]
            await self._process([m for _, m in rows if m.channel not in self._held])

    async def _map(self, batch: list[StoredMessage]) -> list[list[RouteResult]] | None:
        """Every message's route results: from the mapping workers when there are any, else mapped here,
        yielding to the loop every MAX_SLICE. None: the workers could not map this batch (it stays
        `received` and is found again by a rescan)."""
        if self.mapper is not None:
            try:
                return await self.mapper.route_batch(batch)
            except MappingUnavailable as exc:
                log.error("mapping workers unavailable; messages stay received and are retried",
                          count=len(batch), error=str(exc))
                self._rescan = True
                await asyncio.sleep(1.0)
                return None
        routed = []
        slice_started = time.perf_counter()
        for msg in batch:
            if time.perf_counter() - slice_started > MAX_SLICE:
                await asyncio.sleep(0)  # let ACKs out between messages: mapping shares the loop
                slice_started = time.perf_counter()
            try:
                routed.append(self.route(msg))
            except Exception as exc:  # a router bug fails this message, visibly, not the engine
                log.exception("router raised", message_id=msg.id, channel=msg.channel)
                routed.append([RouteResult(route_id="(router)",
                                           error=f"internal error: {type(exc).__name__}")])
        return routed

    async def _process(self, batch: list[StoredMessage]) -> None:
        if not batch:
            return
        decided: list[tuple[StoredMessage, MessageState, str | None, list[RouteResult]]] = []
        routed = await self._map(batch)
        if routed is None:
            return
        for msg, results in zip(batch, routed, strict=True):
            if self.subscriptions is not None:
                results = [self.subscriptions.apply(r) for r in results]
            state, error = decide(results)
            decided.append((msg, state, error, results))
        now = time.time()

        def commit(conn: Connection) -> tuple[Sequence[Pending], set[str]]:
            done = messages.record_outcomes(
                conn, [(msg.id, state, error, results) for msg, state, error, results in decided], now=now)
            outcomes: list[Routed] = [(msg, results) for msg, _, _, results in decided if msg.id in done]
            return self.deliveries.record_many(conn, outcomes, now), done

        try:
            # Not durable: a power loss can drop it, leaving the message `received` to be mapped again.
            queued, done = await self.store.write(commit, durable=False)
        except StoreError:
            log.error("cannot record outcomes; messages stay received and are retried", count=len(batch))
            self._rescan = True
            await asyncio.sleep(1.0)
            return
        self.deliveries.hand_over(queued)
        for msg, state, error, results in decided:
            if msg.id in done:
                self.on_outcome(msg, state, results)
            for fut in self._waiters.pop(msg.id, []):
                if not fut.done():
                    fut.set_result(ProcessingOutcome(message_id=msg.id, state=state, error=error))
