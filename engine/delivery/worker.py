"""One destination's delivery worker: takes due rows, sends them, records the outcome, backs off.

`parallel` (default): `concurrency` sender tasks, each with one request in flight, fed from a memory
queue of due rows. The pipeline hands new rows over right after its commit (`offer`), so the common
case never reads a row back from the store; the store is claimed (due time order, so a retrying
poison row never holds back fresher ones) at start, after a retry falls due, after a `wake()`
(replay) and when the memory queue overflowed. A destination that is `down` (several failures in a
row) is probed with one delivery at a time, with a backoff pause after each failed probe; after each
failed probe every queued item older than the policy's retry budget is dead-lettered, probed or not
(engine/delivery/expiry.py), so `max_attempts`/`max_age` mean the same during an outage. A permanent
answer (HTTP 4xx, MLLP AR) is an answer: it never counts towards `down`. With
`batch` set on the connector, a sender sends up to `max_records` rows in one request (`_deliver` says
what a batch's answer means for each row).
`fifo`: strict creation order per destination, or per `order_key` value (e.g. a patient id); a head
that fails blocks its key until it is sent or dead. One record per request.

Rows are claimed in memory (the `inflight` map), never marked in the store, so a crash leaves them
queued and they are sent again after restart with the same delivery id. Claims run through
`store.write` so they are serialised after every outcome already committed. With nothing due the
worker sleeps until the earliest retry time or a `wake()`: no polling.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import structlog

from channels.base import Outbound
from engine.config import DestinationConfig
from engine.delivery import expiry, outbox
from engine.delivery.outbox import Pending
from engine.delivery.retry import (
    RetryPolicy,
    as_delivery_error,
    compute_backoff,
    retry_budget,
    retry_delay,
    should_dead_letter,
)
from engine.delivery.sent_recorder import SentBatcher
from engine.delivery.store_backoff import StoreBackoff
from engine.errors import DeliveryError, PermanentDeliveryError, StoreError
from engine.logs import mask_text
from engine.metrics import Metrics
from engine.store.sqlite import Store
from engine.types import DeliveryItem, DeliveryResult, DestinationState

DEFAULT_CONCURRENCY = 4
"""Requests in flight per destination (parallel mode) or keys in flight (fifo with an order_key)."""
DOWN_AFTER = 3
"""Consecutive failed requests after which a destination shows `down`."""
SUMMARY_EVERY = 60.0
"""Seconds between the WARNING summaries logged while a destination stays down."""
SEND_TIMEOUT = 300.0
"""Hard cap on one send (connectors have their own, shorter timeouts); exceeding it is transient."""
FIFO_WINDOW = 2000
"""Queued rows a FIFO claim looks at to find each key's head."""
FIFO_RUN = 64
"""Consecutive rows of one key sent by one FIFO task before claiming again."""
CLAIM_PAGE = 512
"""Rows one claim reads from the store; the next page is read when the memory queue runs below it."""
MEMORY_QUEUE = 10_000
"""Rows handed over by the pipeline held in memory; beyond it they wait in the store (disk, not RAM)."""

log = structlog.get_logger("yonglink.delivery")

SendOutcome = DeliveryResult | DeliveryError
"""What one record of a request came to: the destination's answer, or why it was not accepted."""


class DestinationWorker:
    """Delivers one destination's queue; `describe()` feeds `/status`."""

    def __init__(self, *, config: DestinationConfig, outbound: Outbound | None, store: Store,
                 metrics: Metrics, rng: random.Random | None = None,
                 connector_error: str | None = None, on_change: Callable[[], None] | None = None,
                 owner: str | None = None, may_send: Callable[[], bool] | None = None) -> None:
        opts: Mapping[str, Any] = config.options
        self.owner = owner
        """In a cluster, this node's id: the store is claimed for its rows only (outbox.owned)."""
        self.may_send = may_send
        """FIFO in a cluster: True while this node holds the destination's singleton (engine/cluster/);
        the holder sends every queued row of the destination, in order, whoever created it."""
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
        batching = outbound is not None and not self.fifo
        self.batch_size = max(1, outbound.batch_size) if batching and outbound else 1
        self.batch_wait = outbound.batch_wait if batching and outbound else 0.0
        self.inflight: dict[str, Pending] = {}  # every row the worker holds: queued in memory or sending
        self.busy_keys: set[str | None] = set()
        self.blocked: dict[str | None, str] = {}
        self.state = DestinationState.OK if connector_error is None else DestinationState.DOWN
        self.last_error: str | None = connector_error
        self.last_error_at: float | None = time.time() if connector_error else None
        self.failures = 0
        self.down_since: float | None = None
        self.recovered_at: float | None = None  # the last time a `down` destination answered again
        self.next_probe_at: float | None = None  # while down: when the paused probe sends again
        self.budget = retry_budget(self.policy)  # seconds from creation to dead letter (retry.py)
        self.sent = 0
        self.claims = 0  # store reads of due rows (parallel mode)
        self._sending = 0
        self._ready: deque[Pending] = deque()
        self._ready_since = 0.0
        self._more = True  # the store may hold due rows that are not in memory (at start: all of them)
        self._next_at: float | None = None
        self._cursor: outbox.ClaimKey | None = None  # where the next page of a sweep through the store starts
        self._page = max(CLAIM_PAGE, self.concurrency * self.batch_size * 2)
        self._stopping = False
        self._failures_since_summary = 0
        self._last_summary = 0.0
        self._event = asyncio.Event()  # the claim loop: look at the store again
        self._has_ready = asyncio.Event()  # the senders: rows arrived in the memory queue
        self._probe_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = log.bind(destination=self.name)
        self._sent_counter = metrics.deliveries.labels(self.name, "sent")
        self._sent_log = SentBatcher(store, self._settled)
        self.on_change = on_change  # called after every recorded outcome (refreshes `/status` counts)
        self._store_backoff = StoreBackoff(self._log)  # the store refused our bookkeeping: pause sending

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
        self._stopping = True
        self._has_ready.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._sent_log.drain()
        if self.outbound is not None:
            try:
                await self.outbound.stop()
            except Exception:
                self._log.exception("destination stop failed")

    def wake(self) -> None:
        """Rows were queued (or re-queued) in the store without a hand-over: claim them (from the start:
        a row whose sent mark failed lies behind the cursor of a sweep in progress)."""
        self._more = True
        self._cursor = None
        self._event.set()

    def offer(self, rows: Sequence[Pending]) -> None:
        """Rows the pipeline just committed: send them from memory, without a claim."""
        if self.fifo or self._task is None or self._stopping or len(self._ready) + len(rows) > MEMORY_QUEUE:
            self.wake()  # fifo claims by key; a full memory queue leaves the rest to a later claim
            return
        self._push(rows)

    def _push(self, rows: Sequence[Pending]) -> None:
        if not self._ready:
            self._ready_since = time.monotonic()
        for row in rows:
            if row.id not in self.inflight:  # a claim and a hand-over can both bring a fresh row
                self.inflight[row.id] = row
                self._ready.append(row)
        if self._ready:
            self._has_ready.set()

    async def _sleep(self, until: float | None) -> None:
        timeout = None if until is None else max(0.0, until - time.time())
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            self._more = True  # a retry fell due

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- parallel ---------------------------------------------------------------------------------

    async def _run_parallel(self) -> None:
        for _ in range(self.concurrency):
            self._spawn(self._sender())
        page = self._page
        claim_by = 0.0
        while True:
            self._event.clear()
            # Claim when the memory queue runs low, and at least once a second while the store has more
            # (so retries fall due on time even when hand-overs keep the memory queue full).
            # While `down` the senders only probe, one row at a time: reading pages of rows that cannot
            # be sent would only take the store writer from ingest (a 10-minute outage measured 488
            # msg/s ingest instead of ~1,500 as the backlog grew). Claim again once it recovers.
            idle_down = self.state is DestinationState.DOWN and bool(self._ready)
            if self._more and not idle_down and (len(self._ready) < page or time.monotonic() >= claim_by):
                self._more = False
                claim_by = time.monotonic() + 1.0
                self.claims += 1
                try:
                    rows, self._next_at, self._cursor = await self.store.write(
                        partial(outbox.claim_due, destination=self.name, now=time.time(), limit=page,
                                exclude=frozenset(self.inflight), after=self._cursor, owner=self.owner),
                        durable=False)
                except StoreError:
                    self._store_backoff.failed("cannot claim deliveries; retrying", 0)
                    self._more, self._cursor = True, None
                    await self._store_backoff.wait()
                    continue
                self._push(rows)
                if self._cursor is not None:
                    self._more = True  # a full page: read on (behind it) once the senders have taken some
                if self._more and len(self._ready) < page:
                    continue
            until = self._next_at
            if self._more:
                until = min(until or math.inf, time.time() + 1.0)
            await self._sleep(until)

    async def _sender(self) -> None:
        while not self._stopping:
            if self._store_backoff.blocked(self.store.full):
                await self._store_backoff.wait()  # sending what cannot be recorded only repeats it
                continue
            if not self._ready:
                self._has_ready.clear()
                await self._has_ready.wait()
                continue
            if self.state is DestinationState.DOWN:
                await self._probe()
                continue
            await self._gather_batch()
            rows = [self._ready.popleft() for _ in range(min(self.batch_size, len(self._ready)))]
            if self._more and len(self._ready) < self._page:
                self._event.set()
            if rows:
                await self._deliver(rows)

    async def _gather_batch(self) -> None:
        """With `batch.max_wait`, wait (at most that long after the oldest row arrived) for a full batch."""
        if self.batch_size <= 1 or self.batch_wait <= 0:
            return
        deadline = self._ready_since + self.batch_wait
        while 0 < len(self._ready) < self.batch_size and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._has_ready.clear()
            try:
                await asyncio.wait_for(self._has_ready.wait(), remaining)
            except TimeoutError:
                return

    async def _probe(self) -> None:
        """While `down`, send one delivery at a time and pause (backoff) after each failure: a long
        outage costs one attempt per pause, not one per queued message, and no CPU. After each failed
        probe, items whose retry budget is spent are dead-lettered (`_expire`), probed or not."""
        async with self._probe_lock:
            if self.state is not DestinationState.DOWN or not self._ready or self._stopping:
                return
            if not await self._deliver([self._ready.popleft()]):
                pause = compute_backoff(min(self.failures, 64), self.policy, self.rng)
                self.next_probe_at = time.time() + pause
                await self._expire()
                await asyncio.sleep(max(0.0, self.next_probe_at - time.time()))
            self.next_probe_at = None

    async def _expire(self) -> None:
        """Dead-letter every queued item older than the retry budget (in memory and in the store)."""
        total = 0
        while self.state is DestinationState.DOWN and not self._stopping:
            now = time.time()
            cutoff = now - self.budget
            held = [row for row in self._ready if row.created_at < cutoff]
            if held:
                gone = {row.id for row in held}
                self._ready = deque(row for row in self._ready if row.id not in gone)
            policy = self.policy
            error = (f"{expiry.BUDGET_REASON} ({policy.max_attempts} attempts or {policy.max_age:g} s): "
                     f"{self.last_error or 'no answer'}")
            try:
                count, more = await self.store.write(partial(
                    expiry.expire_queued, destination=self.name, created_before=cutoff, held=held,
                    exclude=frozenset(self.inflight), now=now, error=error, owner=self.owner))
            except StoreError:
                self._log.error("cannot dead-letter expired deliveries; they stay queued", count=len(held))
                for row in held:  # back to the memory queue (`_push` skips ids it still holds)
                    self.inflight.pop(row.id, None)
                self._push(held)
                break
            for row in held:
                self.inflight.pop(row.id, None)
            if count:
                total += count
                self.metrics.deliveries.labels(self.name, "dead").inc(count)
                self._changed()
            if not more:
                break
        if total:
            self._log.warning("deliveries dead-lettered: retry budget spent while down", count=total,
                              budget_seconds=round(self.budget, 3))

    # --- fifo -------------------------------------------------------------------------------------

    async def _run_fifo(self) -> None:
        while True:
            self._event.clear()
            if self.may_send is not None and not self.may_send():
                self.blocked = {}  # another node sends this destination; `wake()` when it is ours
                await self._sleep(None)
                continue
            now = time.time()
            busy = frozenset(self.busy_keys)
            try:
                runs = await self.store.write(partial(outbox.claim_heads, destination=self.name,
                                                      window=FIFO_WINDOW, exclude_keys=busy, run=FIFO_RUN),
                                              durable=False)
            except StoreError:
                self._store_backoff.failed("cannot claim deliveries; retrying", 0)
                await self._store_backoff.wait()
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
            while self._store_backoff.blocked(self.store.full) and not self._stopping:
                await self._store_backoff.wait()
            for row in run:
                if self.may_send is not None and not self.may_send():
                    break  # another node sends this destination now: its order is theirs to keep
                if row.next_attempt_at > time.time() or not await self._deliver([row], recorded=True):
                    break
        finally:
            for row in run:
                self.inflight.pop(row.id, None)
            self.busy_keys.discard(key)
            self._event.set()

    # --- one request ------------------------------------------------------------------------------

    def _item(self, row: Pending) -> DeliveryItem:
        return DeliveryItem(delivery_id=row.id, message_id=row.message_id, destination=row.destination,
                            payload=row.payload, content_type=row.content_type, attempt=row.attempts + 1,
                            route_id=row.route_id, dataset=row.dataset,
                            metadata={"channel": row.channel or ""})

    async def _request(self, rows: Sequence[Pending]) -> list[SendOutcome] | DeliveryError:
        """One request for `rows`: an outcome per row, or one error for the request as a whole.

        A batching destination always gets `send_batch` (even for one row), so its receiver sees one
        body shape (a JSON array) whatever the load.
        """
        outbound = self.outbound
        if outbound is None:  # start() does not run a worker without a connector
            raise RuntimeError("destination has no connector")
        self._sending += len(rows)
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                if self.batch_size == 1:
                    return [await outbound.send(self._item(rows[0]))]
                outcomes = list(await outbound.send_batch([self._item(r) for r in rows]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return as_delivery_error(exc)
        finally:
            self._sending -= len(rows)
        if len(outcomes) != len(rows):  # a connector bug: retried, visibly, rather than guessed at
            return as_delivery_error(RuntimeError(f"send_batch answered {len(outcomes)} outcomes "
                                                  f"for {len(rows)} items"))
        return outcomes

    async def _deliver(self, rows: Sequence[Pending], *, recorded: bool = False) -> bool:
        """Send `rows` in one request and record each outcome; True when every row was sent.

        A request that fails as a whole fails each of its rows (each gets its own attempt, retry and,
        in the end, dead letter). Except a batch refused with a *permanent* error: it cannot say which
        record is bad, so each row gets a `split` attempt and is sent again on its own - one poison
        record never dead-letters its neighbours. `recorded`: wait until the sent rows are committed
        (FIFO's order needs it).
        """
        outcomes = await self._request(rows)
        if isinstance(outcomes, PermanentDeliveryError) and len(rows) > 1:
            alone = await self._record_split(rows, outcomes)
            results = await asyncio.gather(*(self._deliver([row]) for row in alone))
            return bool(alone) and all(results)
        if isinstance(outcomes, DeliveryError):
            outcomes = [outcomes] * len(rows)
        failed: list[tuple[Pending, DeliveryError]] = []
        commits: list[asyncio.Future[bool]] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, DeliveryError):
                failed.append((row, outcome))
            else:
                commits.append(self._sent_log.add(row, row.attempts + 1, outcome.response))
        if commits:
            self._set_success()
        if failed:
            await self._record_failures(failed)
        if recorded and commits:
            return all(await asyncio.gather(*commits)) and not failed
        return not failed

    def _settled(self, rows: Sequence[Pending], ok: bool) -> None:
        """SentBatcher: the rows are recorded as sent (or, if the commit failed, still queued)."""
        for row in rows:
            self.inflight.pop(row.id, None)
        if not ok:
            self._store_backoff.failed("cannot record sent deliveries; they will be sent again", len(rows))
            self.wake()
            return
        self._store_backoff.succeeded()
        self._sent_counter.inc(len(rows))
        self.sent += len(rows)
        self._changed()

    async def _record_split(self, rows: Sequence[Pending], err: DeliveryError) -> list[Pending]:
        """Log the refused batch as a `split` attempt of each row; answer the rows to send alone."""
        now = time.time()
        try:
            await self.store.write(partial(outbox.mark_split_many, rows=rows, now=now, error=str(err),
                                           response=err.response), durable=False)
        except StoreError:
            self._store_backoff.failed("cannot record a refused batch; its rows stay queued", len(rows))
            for row in rows:
                self.inflight.pop(row.id, None)
            self.wake()
            return []
        self._log.info("batch refused; sending its records one by one", count=len(rows),
                       error_type=type(err).__name__)
        return [dataclasses.replace(row, attempts=row.attempts + 1,
                                    first_attempt_at=row.first_attempt_at or now) for row in rows]

    async def _record_failures(self, failed: Sequence[tuple[Pending, DeliveryError]]) -> None:
        """Retry or dead-letter each failed row, in one store operation."""
        now = time.time()
        dead: list[tuple[Pending, DeliveryError]] = []
        retry: list[tuple[Pending, DeliveryError, float]] = []
        for row, err in failed:
            attempt = row.attempts + 1
            if should_dead_letter(err, attempts=attempt, created_at=row.created_at, now=now,
                                  policy=self.policy):
                dead.append((row, err))
            else:
                retry.append((row, err, now + retry_delay(err, attempt, self.policy, self.rng)))

        def write(conn: Any) -> None:
            for row, err in dead:
                outbox.mark_dead(conn, row, attempts=row.attempts + 1, now=now, error=str(err),
                                response=err.response)
            for row, err, next_at in retry:
                outbox.mark_retry(conn, row.id, attempts=row.attempts + 1, now=now, next_at=next_at,
                                 error=str(err), response=err.response)

        try:
            # Durable only when a dead letter is written: a retry is redone after a power loss anyway.
            await self.store.write(write, durable=bool(dead))
        except StoreError:
            self._store_backoff.failed("cannot record failed attempts; the deliveries stay queued",
                                       len(failed))
        else:
            self._store_backoff.succeeded()
            if dead:
                self.metrics.deliveries.labels(self.name, "dead").inc(len(dead))
                for row, err in dead:
                    self._log.warning("delivery dead-lettered", message_id=row.message_id,
                                      attempts=row.attempts + 1, error_type=type(err).__name__)
            if retry:
                self.metrics.deliveries.labels(self.name, "retry").inc(len(retry))
        finally:
            for row, _ in failed:
                self.inflight.pop(row.id, None)
        self.wake()  # a retry may be due before what the claim loop sleeps for
        transient = [err for _, err in failed if not isinstance(err, PermanentDeliveryError)]
        if transient:
            self._set_failure(transient[0])
        else:  # the receiver answered (e.g. HTTP 422): it is reachable, only these records are refused
            self._set_reachable(failed[0][1])
        self._changed()

    # --- state ------------------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _set_success(self) -> None:
        self.failures = 0
        if self.state is DestinationState.DOWN:
            self.state = DestinationState.OK
            self.recovered_at, self.down_since, self.next_probe_at = time.time(), None, None
            self._log.warning("destination recovered")
            self._event.set()  # the claim loop rests while down

    def _set_reachable(self, err: DeliveryError) -> None:
        """A definitive refusal (a permanent error: HTTP 4xx, MLLP AR) is an answer: the destination
        is up, only the refused records are dead-lettered."""
        self._set_success()
        self.last_error, self.last_error_at = str(err)[:500], time.time()

    def _set_failure(self, err: DeliveryError) -> None:
        now = time.time()
        self.failures += 1
        self._failures_since_summary += 1
        self.last_error, self.last_error_at = str(err)[:500], now
        if self.state is not DestinationState.DOWN and self.failures >= DOWN_AFTER:
            self.state = DestinationState.DOWN
            self.down_since = now
            self._last_summary = now
            self._failures_since_summary = 0
            # the reason text, masked: receivers echo records back in their error bodies (engine/logs.py)
            self._log.warning("destination down", error_type=type(err).__name__, failures=self.failures,
                              reason=mask_text(str(err)[:300]))
        elif self.state is DestinationState.DOWN and now - self._last_summary >= SUMMARY_EVERY:
            self._log.warning("destination still down", failed_attempts=self._failures_since_summary,
                              error_type=type(err).__name__, reason=mask_text(str(err)[:300]))
            self._last_summary = now
            self._failures_since_summary = 0

    def describe(self) -> dict[str, Any]:
        state: str = self.state
        if self._store_backoff.failing:  # what the destination does matters less than the store
            state = "store_full" if self.store.full else "store_error"
        blocked_id = None
        if self.fifo and self.blocked:
            blocked_id = next(iter(self.blocked.values()))
            if state is DestinationState.OK:
                state = DestinationState.BLOCKED
        last = {"at": self.last_error_at, "text": self.last_error} if self.last_error else None
        own = self.outbound.describe() if self.outbound is not None else {}  # e.g. export periods
        if last and self.recovered_at is not None and (self.last_error_at or 0.0) < self.recovered_at:
            last = None  # a recovered destination shows when it recovered, not its old error
        if self._store_backoff.last_error:
            last = {"at": self._store_backoff.last_error_at, "text": self._store_backoff.last_error}
        return {"name": self.name, "type": self.type, "ordering": "fifo" if self.fifo else "parallel",
                "state": state, "in_flight": self._sending, "held": len(self.inflight),
                "blocked_message_id": blocked_id, "last_error": last, "down_since": self.down_since,
                "recovered_at": self.recovered_at, "next_probe_at": self._next_probe(),
                "retry_budget_seconds": round(self.budget, 3), **own}

    def _next_probe(self) -> float | None:
        """When the next attempt is due: the paused probe while down, else the earliest retry."""
        if self.state is not DestinationState.DOWN:
            return self._next_at
        if self.next_probe_at is not None:
            return self.next_probe_at
        return time.time() if self._ready or self._sending else self._next_at
