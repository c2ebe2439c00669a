"""The pause after a store failure: doubling, capped, one step per pause, lifted when space returns."""

from __future__ import annotations

import structlog

from engine.delivery.store_backoff import STORE_PAUSE_CAP, StoreBackoff, store_pause


def test_the_pause_doubles_from_one_second_and_is_capped() -> None:
    cap = STORE_PAUSE_CAP
    assert [store_pause(n) for n in (1, 2, 3, 4, 5, 6, 50)] == [1, 2, 4, 8, 16, cap, cap]


def test_many_senders_failing_at_once_count_as_one_step_and_space_returning_lifts_the_pause() -> None:
    now = [0.0]
    backoff = StoreBackoff(structlog.get_logger("test"), clock=lambda: now[0])
    for _ in range(16):  # sixteen senders hit the same full store
        backoff.failed("cannot record sent deliveries", 1)
    assert backoff.failures == 1 and backoff.resume_at == 1.0
    assert backoff.blocked(full=True)
    now[0] = 1.5
    assert backoff.blocked(full=True) and backoff.failures == 2  # still full: pause again, longer
    assert not backoff.blocked(full=False)  # room again: send now
    backoff.succeeded()
    assert not backoff.failing and not backoff.blocked(full=False)
