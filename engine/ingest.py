"""Commits of inbound messages, gathered per event-loop turn into one store operation.

Every message a channel accepts in the same turn of the loop (32 connections' frames arriving
together, a pipelined burst, an AMQP prefetch window) becomes one `messages.insert_many` op. The store
still group-commits whatever ops queued while its previous commit ran; this just makes each op carry
many messages, so the writer thread and the event loop trade the GIL a few times per burst instead
of several times per message. Nothing waits on a timer: the flush runs at the end of the current turn.
"""

from __future__ import annotations

import asyncio

from engine import messages
from engine.errors import StoreError
from engine.store import Store
from engine.types import Acceptance, InboundMessage


class IngestBatcher:
    """`submit(msg)` returns a future that resolves with the message's `Acceptance` after COMMIT."""

    def __init__(self, store: Store, *, dedupe_window: float) -> None:
        self.store = store
        self.dedupe_window = dedupe_window
        self._pending: list[tuple[InboundMessage, asyncio.Future[Acceptance]]] = []
        self._scheduled = False
        self.flushes = 0

    def submit(self, msg: InboundMessage) -> asyncio.Future[Acceptance]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Acceptance] = loop.create_future()
        self._pending.append((msg, fut))
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
        msgs = [m for m, _ in batch]
        window = self.dedupe_window
        try:
            commit = self.store.write(lambda conn: messages.insert_many(conn, msgs, dedupe_window=window))
        except StoreError as exc:
            _fail(batch, exc)
            return

        def settle(done: asyncio.Future[list[Acceptance]]) -> None:
            if done.cancelled():
                _fail(batch, StoreError("store commit cancelled"))
                return
            exc = done.exception()
            if exc is not None:
                _fail(batch, exc)
                return
            for (_, fut), acc in zip(batch, done.result(), strict=True):
                if not fut.done():
                    fut.set_result(acc)

        commit.add_done_callback(settle)


def _fail(batch: list[tuple[InboundMessage, asyncio.Future[Acceptance]]], exc: BaseException) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)
