"""Predictable retry (#15 item 3): the policy's budget holds while a destination is down, any reply
counts as reachable, and `/status` says when the next probe is due and when the oldest item will be
dead-lettered."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import delivery_support as S
import pytest
import structlog

from engine.config import Config
from engine.delivery.retry import RetryPolicy, retry_budget
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends


def http_config(url: str, retry: str) -> str:
    return f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: platform
    type: http
    retry: {{{retry}}}
    http: {{url: "{url}/r"}}
"""


def test_the_retry_budget_is_the_no_jitter_backoff_schedule_capped_by_max_age() -> None:
    """max_attempts 5 at 1 s doubling, 10 s cap: attempts at 0, 1, 3, 7, 15 s - the fifth fails at 15 s."""
    assert retry_budget(RetryPolicy(max_attempts=5, initial_delay=1, multiplier=2, max_delay=10)) == 15
    assert retry_budget(RetryPolicy(max_attempts=8, initial_delay=1, multiplier=2, max_delay=10)) == 45
    assert retry_budget(RetryPolicy(max_attempts=1000, initial_delay=1, max_delay=300, max_age=3600)) == 3600
    assert retry_budget(RetryPolicy(max_attempts=1)) == 0


async def test_a_down_destination_dead_letters_every_item_whose_budget_is_spent_not_only_the_probed_one(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """The issue's case, scaled down: `max_attempts: 5` and a short `max_delay`; the receiver is down
    (503) and is probed one delivery at a time, yet all 300 queued items reach the DLQ once their
    budget is spent - with far fewer requests than 300 x 5."""
    sink = await S.Sink(default=503).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "max_attempts: 5, initial_delay: 0.05, max_delay: 0.2, jitter: 0")))
        await S.inject(engine, records=[{"n": i} for i in range(300)], destinations=("platform",))
        await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM dead_letters HAVING count(*) = 300"))
        assert await S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'queued'") == [(0,)]
        [(swept,)] = await S.rows(engine, "SELECT count(*) FROM dead_letters WHERE attempts = 0"
                                          " AND error LIKE 'retry budget spent while destination down%503%'")
        assert swept > 250  # most were never probed; the dead letter says why and the last error
        assert len(sink.requests) < 300
    finally:
        await sink.stop()


async def test_a_receiver_answering_422_is_reachable_so_the_destination_is_not_down(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(default=422).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(sink.url, "max_attempts: 3")))
        await S.inject(engine, records=[{"n": i} for i in range(10)], destinations=("platform",))
        await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM dead_letters HAVING count(*) = 10"))
        worker = engine.delivery.workers["platform"]
        assert worker.state == "ok" and worker.failures == 0
        [status] = engine.delivery.status()
        assert status["state"] == "ok" and "422" in status["last_error"]["text"]
    finally:
        await sink.stop()


async def test_status_says_when_the_next_probe_is_due_and_when_the_oldest_item_will_be_dead_lettered(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(default=503).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "max_attempts: 10, initial_delay: 0.05, max_delay: 1, jitter: 0, max_age: 1h")))
        before = time.time()
        await S.inject(engine, records=[{"n": i} for i in range(20)], destinations=("platform",))
        worker = engine.delivery.workers["platform"]
        await S.wait_for(lambda: worker.state == "down")
        engine.delivery.refresh_soon()
        [st] = await S.wait_for(lambda: [d for d in engine.delivery.status() if d["queued"]
                                         and d["next_probe_at"] and d["dead_letter_due_at"]])
        budget = retry_budget(worker.policy)
        assert budget == 0.05 + 0.1 + 0.2 + 0.4 + 0.8 + 1 + 1 + 1 + 1
        assert before + budget <= st["dead_letter_due_at"] <= time.time() + budget
        assert before < st["next_probe_at"] <= time.time() + 1.0
    finally:
        await sink.stop()


async def test_a_recovered_destination_shows_recovered_at_not_the_old_error(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(script=[503] * 4).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "initial_delay: 0.05, max_delay: 0.1, jitter: 0")))
        await S.inject(engine, records=[{"n": i} for i in range(5)], destinations=("platform",))
        await S.wait_for(lambda: len(sink.accepted) == 5)
        [st] = engine.delivery.status()
        assert st["state"] == "ok" and st["last_error"] is None
        assert st["recovered_at"] is not None and st["recovered_at"] <= time.time()
    finally:
        await sink.stop()


async def test_down_and_still_down_log_lines_carry_the_masked_reason(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """The receiver echoes the record back in its error; the log line has the reason, not the record."""
    sink = await S.Sink(default=503).start()
    sink.error_body = b"PID|1||110101199003074514^^^^ID||WANG^WEI"
    try:
        with structlog.testing.capture_logs() as logs:
            engine: Engine = await engine_factory(make_config(http_config(
                sink.url, "max_attempts: 1000, initial_delay: 0.02, max_delay: 0.05, jitter: 0")))
            await S.inject(engine, records=[{"n": 1}], destinations=("platform",))
            await S.wait_for(lambda: [e for e in logs if e["event"] == "destination down"])
        [down] = [e for e in logs if e["event"] == "destination down"]
        assert "503" in down["reason"]
        assert "110101199003074514" not in down["reason"] and "WANG" not in down["reason"]
    finally:
        await sink.stop()
