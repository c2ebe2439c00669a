"""The engine's spine without a network: accept commits, the pipeline decides, restart recovers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, parse_config
from engine.runtime import Engine
from engine.store import messages
from engine.types import InboundMessage, MessageState

pytestmark = pytest.mark.both_backends

CONFIG = """
engine:
  store: {path: var/e.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: lab
    type: mllp
    enabled: false
    mllp: {listen: "127.0.0.1:0"}
"""


def adt(control_id: str) -> InboundMessage:
    return InboundMessage(channel="lab", raw=b"MSH|^~\\&|LIS|NBH|||20240101||ADT^A01|X|P|2.5.1\r",
                          content_type="x-application/hl7-v2+er7", received_at=time.time(),
                          sending_facility="NBH", control_id=control_id, dedupe_key=f"NBH|{control_id}")


async def test_accepted_message_is_stored_then_processed_and_counted(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    rt = engine.channels["lab"]
    acc = await rt.accept(adt("A1"))
    outcome = await rt.wait_processed(acc.message_id, timeout=5)
    assert outcome is not None and outcome.state is MessageState.FILTERED  # no routes loaded
    stored = await engine.store.read(lambda c: messages.get(c, acc.message_id))
    assert stored is not None and stored.state is MessageState.FILTERED and stored.error == "no route matched"
    assert rt.stats.counts["received"] == 1 and rt.stats.counts["filtered"] == 1


async def test_duplicate_is_answered_from_the_store_and_not_processed_again(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    rt = engine.channels["lab"]
    first = await rt.accept(adt("D1"))
    second = await rt.accept(adt("D1"))
    assert second.duplicate and second.message_id == first.message_id
    assert rt.stats.counts["duplicate"] == 1 and rt.stats.counts["received"] == 1


async def test_a_burst_committed_together_is_counted_once_per_outcome_before_its_callers_resume(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    rt = engine.channels["lab"]
    counted: list[tuple[str, int]] = []
    count = rt.count

    def recording(outcome: str, n: int = 1) -> None:
        counted.append((outcome, n))
        count(outcome, n)

    rt.count = recording  # type: ignore[method-assign]
    await rt.accept(adt("B0"))  # one already stored: the burst below holds a duplicate
    counted.clear()
    accs = await asyncio.gather(*(rt.accept(adt(f"B{i}")) for i in range(50)))
    assert sum(a.duplicate for a in accs) == 1
    # Counted before the callers resume, one update per outcome for the whole batch.
    assert rt.stats.counts["received"] == 50 and rt.stats.counts["duplicate"] == 1
    assert sorted(counted) == [("duplicate", 1), ("filtered", 49), ("received", 49)]
    assert engine.metrics.registry.get_sample_value(
        "yonglink_messages_total", {"channel": "lab", "outcome": "received"}) == 50


async def test_messages_accepted_but_not_processed_before_a_stop_are_processed_after_restart(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    config = make_config(CONFIG)
    engine: Engine = await engine_factory(config)
    await engine.pipeline.stop()  # simulate a crash between commit and mapping
    acc = await engine.channels["lab"].accept(adt("R1"))
    await engine.stop()
    again: Engine = await engine_factory(config)
    await again.pipeline.drain()
    stored = await again.store.read(lambda c: messages.get(c, acc.message_id))
    assert stored is not None and stored.state is MessageState.FILTERED


async def test_a_caller_cancelled_while_its_commit_is_in_flight_still_gets_the_message_processed(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """A peer that hangs up mid-commit cancels the channel's task; the committed message is still
    counted and mapped now, not after a restart."""
    import asyncio

    engine: Engine = await engine_factory(make_config(CONFIG))
    rt = engine.channels["lab"]
    task = asyncio.create_task(rt.accept(adt("C1")))
    await asyncio.sleep(0)  # the write is queued to the store's writer thread
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await engine.pipeline.drain()

    async def processed() -> list[MessageState]:
        rows = await engine.store.read(lambda c: messages.search(c, messages.MessageQuery(channel="lab")))
        return [m.state for m in rows]

    for _ in range(100):
        if await processed() == [MessageState.FILTERED]:
            break
        await asyncio.sleep(0.02)
    assert await processed() == [MessageState.FILTERED]
    assert rt.stats.counts["received"] == 1 and rt.stats.counts["filtered"] == 1


async def test_waiting_for_a_message_already_processed_returns_its_outcome_at_once(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    rt = engine.channels["lab"]
    acc = await rt.accept(adt("W1"))
    await engine.pipeline.drain()
    outcome = await rt.wait_processed(acc.message_id, timeout=0.5)
    assert outcome is not None and outcome.state is MessageState.FILTERED


async def test_yonglink_run_moves_its_start_up_objects_out_of_the_collectors_walks(tmp_path: Path) -> None:
    """`run_until_signalled` (what `yonglink run` runs) freezes the objects start-up built, so the
    cyclic collector's full collections stop walking them under load; SIGTERM still stops it cleanly."""
    gc.unfreeze()
    text = CONFIG.replace("var/e.db", str(tmp_path / "e.db"))
    engine = Engine(parse_config(text, file=tmp_path / "c.yaml"))
    task = asyncio.ensure_future(engine.run_until_signalled())
    try:
        for _ in range(200):
            if gc.get_freeze_count() or task.done():
                break
            await asyncio.sleep(0.05)
        assert gc.get_freeze_count() > 0 and not task.done()
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 30)
        gc.unfreeze()
