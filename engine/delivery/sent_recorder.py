"""Sent deliveries, gathered per event-loop turn into one store operation.

Marking a delivery `sent` is two statements (its attempt-log row and the state change) and one
round trip to the store's writer thread. At thousands of deliveries a second that per-delivery op
was the writer's biggest cost, and every op is a GIL hand-off between the writer and the loop. So
every delivery whose send succeeded in the same turn of the loop is recorded by one
`outbox.mark_sent_many` op (like engine/store/ingest.py does for inbound commits). Nothing waits on a
timer: the flush runs at the end of the current turn.

The row stays claimed by its worker until the op commits, so no claim can pick it up again in
between; if the commit fails the row is still `queued` and is sent again (at-least-once, same key).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial

from engine.delivery import outbox
from engine.delivery.outbox import Pending
from engine.errors import StoreError
from engine.store.sqlite import Store

Settled = Callable[[Sequence[Pending], bool], None]
"""Called after the op: the rows, and True when they are recorded as sent (False: still queued)."""


class SentBatcher:
    """`add(row, attempts, response)` returns a future that resolves (to True if recorded) after COMMIT."""

    def __init__(self, store: Store, on_settled: Settled) -> None:
        self.store = store
        self.on_settled = on_settled
        self._pending: list[tuple[Pending, int, str, asyncio.Future[bool]]] = []
        self._scheduled = False
        self._commits: set[asyncio.Future[None]] = set()
        self.flushes = 0

    def add(self, row: Pending, attempts: int, response: str) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        self._pending.append((row, attempts, response, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.flushes += 1
        sent = [(row.id, attempts, response) for row, attempts, response, _ in batch]
        # Not durable: after a power loss the deliveries are sent again (at-least-once, same key).
        try:
            commit = self.store.write(partial(outbox.mark_sent_many, sent=sent, now=time.time()),
                                      durable=False)
        except StoreError:
            self._settle(batch, False)
            return
        self._commits.add(commit)
        commit.add_done_callback(self._commits.discard)
        commit.add_done_callback(lambda done: self._settle(
            batch, not done.cancelled() and done.exception() is None))

    async def drain(self) -> None:
        """Flush what is gathered now and wait for every op in flight (at stop, before the store closes)."""
        if self._scheduled:
            self._flush()
        if self._commits:
            await asyncio.gather(*self._commits, return_exceptions=True)

    def _settle(self, batch: list[tuple[Pending, int, str, asyncio.Future[bool]]], ok: bool) -> None:
        self.on_settled([row for row, _, _, _ in batch], ok)
        for _, _, _, fut in batch:
            if not fut.done():
                fut.set_result(ok)
