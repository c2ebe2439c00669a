"""The retry policy: pure backoff, Retry-After, classification by type and status code."""

from __future__ import annotations

import email.utils
import random

from engine.delivery.retry import (
    RetryPolicy,
    as_delivery_error,
    classify_status,
    compute_backoff,
    parse_retry_after,
    retry_delay,
    should_dead_letter,
)
from engine.errors import PermanentDeliveryError, TransientDeliveryError


def test_defaults_are_10_attempts_1s_doubling_5min_cap_20pct_jitter_24h_max_age() -> None:
    p = RetryPolicy.from_options(None)
    assert (p.max_attempts, p.initial_delay, p.multiplier, p.max_delay, p.jitter, p.max_age) == (
        10, 1.0, 2.0, 300.0, 0.2, 86400.0)


def test_durations_in_the_retry_section_accept_units() -> None:
    p = RetryPolicy.from_options({"initial_delay": "500ms", "max_delay": "2m", "max_age": "1h",
                                  "status_overrides": {"409": "success"}})
    assert (p.initial_delay, p.max_delay, p.max_age) == (0.5, 120.0, 3600.0)
    assert p.status_overrides == {409: "success"}


def test_backoff_without_jitter_grows_exponentially_and_stops_at_the_cap() -> None:
    p = RetryPolicy(initial_delay=1, multiplier=2, max_delay=10, jitter=0)
    assert [compute_backoff(n, p) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_backoff_jitter_stays_within_plus_minus_the_fraction_and_never_exceeds_the_cap() -> None:
    p = RetryPolicy(initial_delay=1, multiplier=2, max_delay=5, jitter=0.2)
    rng = random.Random(7)
    for attempt in range(1, 20):
        base = min(2 ** (attempt - 1), 5)
        for _ in range(50):
            d = compute_backoff(attempt, p, rng)
            assert base * 0.8 - 1e-9 <= d <= min(base * 1.2, 5) + 1e-9


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    p = RetryPolicy()
    assert compute_backoff(3, p, random.Random(1)) == compute_backoff(3, p, random.Random(1))


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert compute_backoff(100_000, RetryPolicy(jitter=0)) == 300.0


def test_retry_after_wins_over_backoff_but_is_capped_by_max_delay() -> None:
    p = RetryPolicy(initial_delay=1, max_delay=30, jitter=0)
    assert retry_delay(TransientDeliveryError("x", retry_after=12), 1, p) == 12
    assert retry_delay(TransientDeliveryError("x", retry_after=3600), 1, p) == 30
    assert retry_delay(TransientDeliveryError("x"), 3, p) == 4


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120
    date = email.utils.formatdate(1_000_060, usegmt=True)
    assert parse_retry_after(date, now=1_000_000) == 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_status_classification_follows_the_documented_table() -> None:
    for status in (200, 201, 202, 204):
        assert classify_status(status) == "success"
    for status in (408, 425, 429, 500, 502, 503, 504):
        assert classify_status(status) == "transient"
    for status in (400, 401, 403, 404, 409, 410, 422):
        assert classify_status(status) == "permanent"


def test_a_destination_can_override_a_status() -> None:
    assert classify_status(409, {409: "success"}) == "success"
    assert classify_status(404, {404: "transient"}) == "transient"
    assert classify_status(503, {503: "permanent"}) == "permanent"


def test_permanent_errors_dead_letter_at_once_transient_ones_after_attempts_or_age() -> None:
    p = RetryPolicy(max_attempts=3, max_age=100)
    assert should_dead_letter(PermanentDeliveryError("x"), attempts=1, created_at=0, now=1, policy=p)
    assert not should_dead_letter(TransientDeliveryError("x"), attempts=2, created_at=0, now=1, policy=p)
    assert should_dead_letter(TransientDeliveryError("x"), attempts=3, created_at=0, now=1, policy=p)
    assert should_dead_letter(TransientDeliveryError("x"), attempts=1, created_at=0, now=100, policy=p)


def test_untyped_connector_exceptions_are_classified_by_type_as_transient() -> None:
    assert isinstance(as_delivery_error(ConnectionRefusedError()), TransientDeliveryError)
    assert isinstance(as_delivery_error(TimeoutError()), TransientDeliveryError)
    assert isinstance(as_delivery_error(ValueError("bug")), TransientDeliveryError)
    perm = PermanentDeliveryError("no")
    assert as_delivery_error(perm) is perm
