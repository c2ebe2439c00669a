"""Log lines a peer can provoke at will are written at most once per interval, counting the rest."""

from __future__ import annotations

from engine.log_throttle import LogThrottle


def test_the_first_event_logs_then_one_per_interval_with_the_number_suppressed() -> None:
    now = [100.0]
    throttle = LogThrottle(10.0, clock=lambda: now[0])
    assert throttle.allow("refused") == (True, 0)
    assert [throttle.allow("refused") for _ in range(5)] == [(False, 0)] * 5
    assert throttle.allow("discarded") == (True, 0)  # keys are independent
    now[0] += 10.0
    assert throttle.allow("refused") == (True, 5)
    assert throttle.allow("refused") == (False, 0)
