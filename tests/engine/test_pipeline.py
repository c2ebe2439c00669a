"""The pipeline maps every committed message exactly once, also when its memory queue overflows."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence

from engine.delivery.outbox import Pending
from engine.pipeline import Pipeline, Routed, decide
from engine.store import messages
from engine.store.base import Store
from engine.store.connection import Connection
from engine.types import InboundMessage, MessageState, RouteResult, StoredMessage


class Recorder:
    """Stands where the delivery service does: counts the messages it is asked to record."""

    def __init__(self) -> None:
        self.recorded: Counter[str] = Counter()

    def record_many(self, conn: Connection, outcomes: Sequence[Routed],
                    now: float) -> Sequence[Pending]:
        self.recorded.update(message.id for message, _ in outcomes)
        return []

    def hand_over(self, rows: Sequence[Pending]) -> None:
        return None


def route(msg: StoredMessage) -> list[RouteResult]:
    return [RouteResult(route_id="r", dataset="person", record={"id": msg.control_id})]


async def test_an_overflowing_memory_queue_falls_back_to_the_store_and_maps_each_message_once(
        new_store: Callable[[], Store]) -> None:
    store = new_store()
    await store.open()
    recorder = Recorder()
    outcomes: Counter[str] = Counter()
    pipeline = Pipeline(store=store, route=route, deliveries=recorder, queue_size=4, batch=8,
                        on_outcome=lambda m, s, r: outcomes.update([m.id]))
    pipeline.start()
    inbound = [InboundMessage(channel="c", raw=b"MSH|^~\\&|\r", content_type="t", received_at=time.time(),
                              control_id=f"C{i}") for i in range(200)]
    accs = await asyncio.gather(*[store.write(lambda c, m=m: messages.insert(c, m, dedupe_window=0))
                                  for m in inbound])
    ids = [a.message_id for a in accs]
    # Submitted without yielding in between, as a burst of commits landing at once would be: the
    # 4-slot memory queue must overflow and the pipeline read the rest back from the store.
    for acc, msg in zip(accs, inbound, strict=True):
        pipeline.submit(StoredMessage(id=acc.message_id, channel="c", received_at=msg.received_at,
                                      content_type="t", state=MessageState.RECEIVED, raw=msg.raw,
                                      control_id=msg.control_id))
    for _ in range(500):
        states = await store.read(lambda c: [r[0] for r in c.execute("SELECT state FROM messages")])
        if states.count("mapped") == 200:
            break
        await asyncio.sleep(0.02)
    await pipeline.stop()
    await store.close()
    assert states.count("mapped") == 200
    assert pipeline.backlog_scans > 0  # the overflow path really ran
    assert set(recorder.recorded) == set(ids) and set(recorder.recorded.values()) == {1}
    assert set(outcomes.values()) == {1}


def test_a_message_is_failed_if_any_route_failed_and_filtered_when_nothing_matched() -> None:
    ok = RouteResult(route_id="a", record={"x": 1})
    bad = RouteResult(route_id="b", error="b.yaml:3 x: bad")
    assert decide([ok, bad]) == (MessageState.FAILED, "b.yaml:3 x: bad")
    assert decide([ok]) == (MessageState.MAPPED, None)
    assert decide([]) == (MessageState.FILTERED, "no route matched")
    assert decide([RouteResult(route_id="f", filtered="test patient")]) == (
        MessageState.FILTERED, "f: test patient")


async def test_a_received_message_nobody_submitted_is_mapped_by_the_periodic_sweep_without_a_restart(
        new_store: Callable[[], Store]) -> None:
    """Issue #16: a commit callback that failed left messages `received` until a restart."""
    store = new_store()
    await store.open()
    pipeline = Pipeline(store=store, route=route, deliveries=Recorder(), sweep_interval=0.05,
                        on_outcome=lambda m, s, r: None)
    pipeline.start()
    try:
        await pipeline.drain()  # the start-up scan found nothing
        msg = InboundMessage(channel="c", raw=b"MSH|^~\\&|\r", content_type="t", received_at=time.time(),
                             control_id="LOST-1")
        acc = await store.write(lambda c: messages.insert(c, msg, dedupe_window=0))  # never submitted
        for _ in range(400):
            stored = await store.read(lambda c: messages.get(c, acc.message_id, with_raw=False))
            if stored is not None and stored.state is MessageState.MAPPED:
                break
            await asyncio.sleep(0.025)  # polls for progress (deadline 10 s); not a timing assertion
        assert stored is not None and stored.state is MessageState.MAPPED
    finally:
        await pipeline.stop()
        await store.close()
