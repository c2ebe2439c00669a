"""Commits of inbound messages, gathered per event-loop turn into one store operation.

Every message a channel accepts in the same turn of the loop (32 connections' frames arriving
together, a pipelined burst, an AMQP prefetch window) becomes one `inserts.InsertPlan`: its rows are
built here, on the loop, and the writer thread runs one multi-row INSERT for it. The store
still group-commits whatever ops queued while its previous commit ran; this just makes each op carry
many messages, so the writer thread and the event loop trade the GIL a few times per burst instead
of several times per message. Nothing waits on a timer: the flush runs at the end of the current turn.

Callers pass a callback (`submit_soon`), called on the loop with the `Acceptance` or the exception once
the commit has landed: the MLLP hot path answers a frame from there without a task or a future per
message. `submit` wraps the same in a future for `await`ing callers.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import structlog

from engine.errors import StoreError
from engine.store import inserts
from engine.store.sqlite import Store
from engine.types import Acceptance, InboundMessage, Landed

log = structlog.get_logger("yonglink.store")

__all__ = ["IngestBatcher", "Landed", "resolve"]


class IngestBatcher:
    """Batches accepted messages into one insert per loop turn; answers each through its callback.

    `routable(channel)` (the router's `may_route`, looked up at every flush so a reload applies) says
    whether any route can select a channel's messages; those of a channel none can select are stored
    already `filtered`, saving the pipeline's second write.
    """

    def __init__(self, store: Store, *, dedupe_window: float,
                 routable: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.dedupe_window = dedupe_window
        self.routable = routable
        self._seal = store.cipher.seal if store.cipher.enabled else None  # off: rows keep the raw bytes
        self._pending: list[tuple[InboundMessage, Landed]] = []
        self._scheduled = False
        self.flushes = 0

    def submit(self, msg: InboundMessage) -> asyncio.Future[Acceptance]:
        """A future that resolves with the message's `Acceptance` after COMMIT."""
        fut: asyncio.Future[Acceptance] = asyncio.get_running_loop().create_future()
        self.submit_soon(msg, functools.partial(resolve, fut))
        return fut

    def submit_soon(self, msg: InboundMessage, landed: Landed) -> None:
        """Queue `msg` for this turn's insert; `landed` is called on the loop when it is committed."""
        self._pending.append((msg, landed))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        self.flushes += 1
        msgs = [m for m, _ in batch]
        plan = inserts.InsertPlan(msgs, dedupe_window=self.dedupe_window, unroutable=self._unroutable(msgs),
                                  seal=self._seal)
        try:
            commit = self.store.write(plan.run, one_statement=plan.one_statement)
        except StoreError as exc:
            _land_all(batch, exc)
            return

        def settle(done: asyncio.Future[dict[int, str]]) -> None:
            if done.cancelled():
                _land_all(batch, StoreError("store commit cancelled"))
                return
            exc = done.exception()
            if exc is not None:
                _land_all(batch, exc)
                return
            for (msg, landed), acc in zip(batch, plan.acceptances(done.result()), strict=True):
                _land(landed, acc, msg)

        commit.add_done_callback(settle)

    def _unroutable(self, msgs: list[InboundMessage]) -> list[bool] | None:
        if self.routable is None:
            return None
        known: dict[str, bool] = {}
        flags = []
        for m in msgs:
            routable = known.get(m.channel)
            if routable is None:
                routable = known[m.channel] = self.routable(m.channel)
            flags.append(not routable)
        return flags if any(flags) else None


def resolve(fut: asyncio.Future[Acceptance], result: Acceptance | BaseException) -> None:
    """A `Landed` callback that settles `fut` (bind it with functools.partial)."""
    if fut.done():  # the awaiting caller was cancelled: the message is committed all the same
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


def _land(landed: Landed, result: Acceptance | BaseException, msg: InboundMessage) -> None:
    """Call one message's callback; its failure stays with it (the other messages of the batch are
    answered all the same: issue #16, one frame's ACK that could not be built stopped 30 others)."""
    try:
        landed(result)
    except Exception:
        log.exception("commit callback failed", channel=msg.channel)


def _land_all(batch: list[tuple[InboundMessage, Landed]], exc: BaseException) -> None:
    for msg, landed in batch:
        _land(landed, exc, msg)
