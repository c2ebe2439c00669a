"""One destination's delivery worker: claims due rows, sends them, records the outcome, backs off.

`parallel` (default): up to `concurrency` sends in flight, due rows taken by due time, so a retrying
(poison) delivery never holds back the rows behind it. A destination that is `down` (several failures
in a row) is probed with one delivery at a time, with a backoff pause after each failed probe.
`fifo`: strict creation order per destination, or per `order_key` value (e.g. a patient id); a head
that fails blocks its key until it is sent or dead.

Rows are claimed in memory (the `inflight` set), never marked in the store, so a crash leaves them
queued and they are sent again after restart with the same delivery id. Claims run through
`store.write` so they are serialised after every outcome already committed. With nothing due the worker
sleeps until the earliest retry time or a `wake()`: no polling.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import structlog

from channels.base import Outbound
from engine import queue
from engine.config import DestinationConfig
from engine.errors import DeliveryError, StoreError
from engine.metrics import Metrics
from engine.queue import Pending
from engine.retry import RetryPolicy, as_delivery_error, compute_backoff, retry_delay, should_dead_letter
from engine.store import Store
from engine.types import DeliveryItem

DEFAULT_CONCURRENCY = 4
"""Sends in flight per destination (parallel mode) or keys in flight (fifo with an order_key)."""
DOWN_AFTER = 3
"""Consecutive failed attempts after which a destination shows `down`."""
SUMMARY_EVERY = 60.0
"""Seconds between the WARNING summaries logged while a destination stays down."""
SEND_TIMEOUT = 300.0
"""Hard cap on one send (connectors have their own, shorter timeouts); exceeding it is transient."""
FIFO_WINDOW = 2000
"""Queued rows a FIFO claim looks at to find each key's head."""
FIFO_RUN = 64
"""Consecutive rows of one key sent by one FIFO task before claiming again."""

log = structlog.get_logger("yonglink.delivery")


class DestinationWorker:
    """Delivers one destination's queue; `describe()` feeds `/status`."""

    def __init__(self, *, config: DestinationConfig, outbound: Outbound | None, store: Store,
                 metrics: Metrics, rng: random.Random | None = None,
                 connector_error: str | None = None) -> None:
        opts: Mapping[str, Any] = config.options
        self.name = config.name
        self.type = config.type
        self.outbound = outbound
        self.store = store
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.policy = RetryPolicy.from_options(opts.get("retry"))
        self.fifo = opts.get("ordering", "parallel") == "fifo"
        self.order_key: str | None = opts.get("order_key")
        default = 1 if self.fifo and not self.order_key else DEFAULT_CONCURRENCY
        self.concurrency = int(opts.get("concurrency", default))
        self.inflight: dict[str, Pending] = {}
        self.busy_keys: set[str | None] = set()
        self.blocked: dict[str | None, str] = {}
        self.state = "ok" if connector_error is None else "down"
        self.last_error: str | None = connector_error
        self.last_error_at: float | None = time.time() if connector_error else None
        self.failures = 0
        self.sent = 0
        self._failures_since_summary = 0
        self._last_summary = 0.0
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = log.bind(destination=self.name)
        self._sent_counter = metrics.deliveries.labels(self.name, "sent")
        self.on_change: Any = None  # set by DeliveryService: called after every recorded outcome

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.outbound is None:
            self._log.warning("destination has no connector; deliveries stay queued", error=self.last_error)
            return
        try:
            await self.outbound.start()
        except Exception as exc:  # a destination that cannot start yet is retried by its sends
            self._set_failure(as_delivery_error(exc))
        runner = self._run_fifo if self.fifo else self._run_parallel
        self._task = asyncio.create_task(runner(), name=f"yonglink-deliver-{self.name}")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop claiming; give sends in flight `grace` seconds, then cancel them (rows stay queued)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.outbound is not None:
            try:
                await self.outbound.stop()
            except Exception:
                self._log.exception("destination stop failed")

    def wake(self) -> None:
        self._event.set()

    async def _sleep(self, until: float | None) -> None:
        timeout = None if until is None else max(0.0, until - time.time())
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- parallel ---------------------------------------------------------------------------------

    async def _run_parallel(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        limit = max(self.concurrency * 4, 64)
        while True:
            self._event.clear()
            now = time.time()
            exclude = frozenset(self.inflight)
            try:
                rows, next_at = await self.store.write(
                    partial(queue.claim_due, destination=self.name, now=now, limit=limit, exclude=exclude),
                    durable=False)
            except StoreError:
                self._log.error("cannot claim deliveries; retrying")
                await asyncio.sleep(1.0)
                continue
            if self.state == "down" and rows:
                await self._probe(rows[0])
                continue
            for row in rows:
                self.inflight[row.id] = row
            for row in rows:
                await slots.acquire()
                self._spawn(self._attempt_parallel(row, slots))
            if len(rows) < limit:
                await self._sleep(next_at)

    async def _probe(self, row: Pending) -> None:
        """While `down`, send one delivery at a time and pause (backoff) after each failure: a long
        outage costs one attempt per pause, not one per queued message, and no CPU."""
        self.inflight[row.id] = row
        try:
            sent = await self._attempt(row)
        finally:
            self.inflight.pop(row.id, None)
        if not sent:
            await asyncio.sleep(compute_backoff(min(self.failures, 64), self.policy, self.rng))

    async def _attempt_parallel(self, row: Pending, slots: asyncio.Semaphore) -> None:
        """The slot is freed as soon as the send returns; the row stays claimed until its outcome commits
        (so a group commit's fsync latency does not cap the sends in flight)."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release()

        try:
            await self._attempt(row, on_sent=release)
        finally:
            self.inflight.pop(row.id, None)
            release()

    # --- fifo -------------------------------------------------------------------------------------

    async def _run_fifo(self) -> None:
        while True:
            self._event.clear()
            now = time.time()
            busy = frozenset(self.busy_keys)
            try:
                runs = await self.store.write(partial(queue.claim_heads, destination=self.name,
                                                      window=FIFO_WINDOW, exclude_keys=busy, run=FIFO_RUN),
                                              durable=False)
            except StoreError:
                self._log.error("cannot claim deliveries; retrying")
                await asyncio.sleep(1.0)
                continue
            waiting = [run[0] for run in runs if run[0].next_attempt_at > now]
            self.blocked = {h.order_value: h.message_id for h in waiting if h.attempts > 0}
            for run in runs:
                if run[0].next_attempt_at > now or len(self.busy_keys) >= self.concurrency:
                    continue
                key = run[0].order_value
                self.busy_keys.add(key)
                for row in run:
                    self.inflight[row.id] = row
                self._spawn(self._send_run(key, run))
            await self._sleep(min((h.next_attempt_at for h in waiting), default=None))

    async def _send_run(self, key: str | None, run: list[Pending]) -> None:
        """Send one key's rows in order; stop at the first failure (the head then waits on its retry)."""
        try:
            for row in run:
                if row.next_attempt_at > time.time() or not await self._attempt(row):
                    break
        finally:
            for row in run:
                self.inflight.pop(row.id, None)
            self.busy_keys.discard(key)
            self._event.set()

    # --- one attempt ------------------------------------------------------------------------------

    async def _attempt(self, row: Pending, on_sent: Callable[[], None] | None = None) -> bool:
        """Send once and record the outcome durably; True when sent. `on_sent` runs when the send is over."""
        if self.outbound is None:
            return False
        attempt = row.attempts + 1
        item = DeliveryItem(delivery_id=row.id, message_id=row.message_id, destination=row.destination,
                            payload=row.payload, content_type=row.content_type, attempt=attempt,
                            route_id=row.route_id, dataset=row.dataset,
                            metadata={"channel": row.channel or ""})
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                result = await self.outbound.send(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_sent is not None:
                on_sent()
            await self._record_failure(row, attempt, as_delivery_error(exc))
            return False
        if on_sent is not None:
            on_sent()
        now = time.time()
        try:
            # Not durable: after a power loss the delivery is sent again (at-least-once, same key).
            await self.store.write(lambda c: queue.mark_sent(c, row.id, attempts=attempt, now=now,
                                                             response=result.response), durable=False)
        except StoreError:
            self._log.error("cannot record a sent delivery; it will be sent again", message_id=row.message_id)
            return False
        self._sent_counter.inc()
        self.sent += 1
        self._set_success()
        self._changed()
        return True

    async def _record_failure(self, row: Pending, attempt: int, err: DeliveryError) -> None:
        now = time.time()
        text = str(err)
        if should_dead_letter(err, attempts=attempt, created_at=row.created_at, now=now, policy=self.policy):
            try:
                await self.store.write(lambda c: queue.mark_dead(
                    c, row, attempts=attempt, now=now, error=text, response=err.response))
            except StoreError:
                self._log.error("cannot record a dead letter; the delivery stays queued",
                                message_id=row.message_id)
                return
            self.metrics.deliveries.labels(self.name, "dead").inc()
            self._log.warning("delivery dead-lettered", message_id=row.message_id, attempts=attempt,
                              error_type=type(err).__name__)
        else:
            next_at = now + retry_delay(err, attempt, self.policy, self.rng)
            try:
                await self.store.write(lambda c: queue.mark_retry(c, row.id, attempts=attempt, now=now,
                                                                  next_at=next_at, error=text,
                                                                  response=err.response), durable=False)
            except StoreError:
                self._log.error("cannot record a failed attempt", message_id=row.message_id)
                return
            self.metrics.deliveries.labels(self.name, "retry").inc()
            self._event.set()  # the retry may be due before what the claim loop sleeps for
        self._set_failure(err)
        self._changed()

    # --- state ------------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _set_success(self) -> None:
        self.failures = 0
        if self.state == "down":
            self.state = "ok"
            self._log.warning("destination recovered")

    def _set_failure(self, err: DeliveryError) -> None:
        now = time.time()
        self.failures += 1
        self._failures_since_summary += 1
        self.last_error, self.last_error_at = str(err)[:500], now
        if self.state != "down" and self.failures >= DOWN_AFTER:
            self.state = "down"
            self._last_summary = now
            self._failures_since_summary = 0
            self._log.warning("destination down", error_type=type(err).__name__, failures=self.failures)
        elif self.state == "down" and now - self._last_summary >= SUMMARY_EVERY:
            self._log.warning("destination still down", failed_attempts=self._failures_since_summary,
                              error_type=type(err).__name__)
            self._last_summary = now
            self._failures_since_summary = 0

    def describe(self) -> dict[str, Any]:
        state = self.state
        blocked_id = None
        if self.fifo and self.blocked:
            blocked_id = next(iter(self.blocked.values()))
            if state == "ok":
                state = "blocked"
        last = {"at": self.last_error_at, "text": self.last_error} if self.last_error else None
        return {"name": self.name, "type": self.type, "ordering": "fifo" if self.fifo else "parallel",
                "state": state, "in_flight": len(self.inflight), "blocked_message_id": blocked_id,
                "last_error": last}
