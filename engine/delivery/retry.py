"""Retry policy of a destination: bounded exponential backoff with jitter, and failure classification.

`compute_backoff` is a pure function of (attempt, policy, rng), like dramatiq's `compute_backoff` and
Camel's `RedeliveryPolicy` (initial delay, multiplier, cap, collision-avoiding jitter). Whether a
failure is worth retrying is decided by the exception *type* (engine/errors.py), never its text; HTTP
connectors turn a status code into one of the two types with `classify_status`, which honours the
destination's `retry.status_overrides`.
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config import parse_duration
from engine.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_INITIAL_DELAY = 1.0
DEFAULT_MULTIPLIER = 2.0
DEFAULT_MAX_DELAY = 300.0
DEFAULT_JITTER = 0.2
DEFAULT_MAX_AGE = 24 * 3600.0

Verdict = Literal["success", "transient", "permanent"]
"""What a destination's answer means for the delivery."""
_VERDICTS: dict[str, Verdict] = {"success": "success", "transient": "transient", "permanent": "permanent"}


def as_verdict(value: str) -> Verdict:
    """A config string as a `Verdict` (the config schema allows only these three)."""
    try:
        return _VERDICTS[value]
    except KeyError:
        raise ValueError(f"status override {value!r}: expected one of {', '.join(_VERDICTS)}") from None

TRANSIENT_STATUSES = frozenset({408, 425, 429})
"""HTTP statuses that are worth retrying besides every 5xx (RFC 9110 §15.5.9, RFC 8470 §5.2, RFC 6585 §4)."""
RETRY_AFTER_STATUSES = frozenset({429, 503})
"""Statuses whose `Retry-After` header is honoured (RFC 9110 §10.2.3)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`destinations[].retry`: how often and how long a transient failure is retried."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    initial_delay: float = DEFAULT_INITIAL_DELAY
    multiplier: float = DEFAULT_MULTIPLIER
    max_delay: float = DEFAULT_MAX_DELAY
    jitter: float = DEFAULT_JITTER
    max_age: float = DEFAULT_MAX_AGE
    status_overrides: Mapping[int, Verdict] = field(default_factory=dict)

    @classmethod
    def from_options(cls, retry: Mapping[str, Any] | None) -> RetryPolicy:
        """Build from the (schema-validated) `retry` section; absent keys take the defaults."""
        r = retry or {}
        return cls(
            max_attempts=int(r.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
            initial_delay=parse_duration(r.get("initial_delay", DEFAULT_INITIAL_DELAY),
                                         key="retry.initial_delay"),
            multiplier=float(r.get("multiplier", DEFAULT_MULTIPLIER)),
            max_delay=parse_duration(r.get("max_delay", DEFAULT_MAX_DELAY), key="retry.max_delay"),
            jitter=float(r.get("jitter", DEFAULT_JITTER)),
            max_age=parse_duration(r.get("max_age", DEFAULT_MAX_AGE), key="retry.max_age"),
            status_overrides={int(k): v for k, v in (r.get("status_overrides") or {}).items()},
        )


def compute_backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) before the next one.

    `initial_delay * multiplier**(attempt-1)`, capped at `max_delay`, then spread by ±`jitter` (a
    fraction) so a destination coming back is not hit by every queued delivery at once; never above
    `max_delay` and never negative.
    """
    exponent = max(0, attempt - 1)
    try:
        base = policy.initial_delay * policy.multiplier ** exponent
    except OverflowError:
        base = policy.max_delay
    base = min(base, policy.max_delay)
    if policy.jitter > 0:
        spread = (rng or random).uniform(-policy.jitter, policy.jitter)
        base *= 1.0 + spread
    return max(0.0, min(base, policy.max_delay))


def retry_budget(policy: RetryPolicy) -> float:
    """Seconds from an item's creation to its dead letter if every attempt fails: the gaps between
    `max_attempts` attempts on the no-jitter backoff schedule, capped by `max_age`.

    While a destination is `down` only one item is probed at a time, so the others make no attempts;
    their budget is spent by time instead (the worker dead-letters items older than this), which keeps
    `max_attempts`/`max_age` meaning the same whether the destination fails one item or all of them.
    """
    flat = dataclasses.replace(policy, jitter=0.0)
    total = 0.0
    for attempt in range(1, policy.max_attempts):
        total += compute_backoff(attempt, flat)
        if total >= policy.max_age:
            break
    return min(total, policy.max_age)


def retry_delay(error: DeliveryError, attempt: int, policy: RetryPolicy,
                rng: random.Random | None = None) -> float:
    """The wait before the next attempt: the server's `Retry-After` if it sent one (capped), else backoff."""
    if isinstance(error, TransientDeliveryError) and error.retry_after is not None:
        return max(0.0, min(error.retry_after, policy.max_delay))
    return compute_backoff(attempt, policy, rng)


def should_dead_letter(error: DeliveryError, *, attempts: int, created_at: float, now: float,
                       policy: RetryPolicy) -> bool:
    """True when the delivery must stop: a permanent failure, attempts exhausted, or older than max_age."""
    if isinstance(error, PermanentDeliveryError):
        return True
    return attempts >= policy.max_attempts or now - created_at >= policy.max_age


def classify_status(status: int, overrides: Mapping[int, Verdict] | None = None) -> Verdict:
    """An HTTP status as success / transient / permanent; `retry.status_overrides` win.

    2xx succeed; 408, 425, 429 and 5xx are transient; every other status (400, 401, 403, 404, 409, 410,
    422, 3xx we did not follow, ...) is permanent: repeating the same request cannot change the answer.
    """
    if overrides and status in overrides:
        return overrides[status]
    if 200 <= status < 300:
        return "success"
    if status in TRANSIENT_STATUSES or 500 <= status < 600:
        return "transient"
    return "permanent"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def as_delivery_error(exc: BaseException) -> DeliveryError:
    """Any exception from a connector as a typed delivery error (by type: OS/timeout errors are transient).

    Connectors should raise the typed errors themselves; this is the safety net for what they miss,
    so a bug in a connector retries (visibly, with its type name) rather than losing the delivery.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TimeoutError):
        return TransientDeliveryError("timed out")
    if isinstance(exc, ConnectionError):
        return TransientDeliveryError(f"connection failed: {type(exc).__name__}")
    if isinstance(exc, OSError):
        return TransientDeliveryError(f"I/O error: {exc.strerror or type(exc).__name__}")
    return TransientDeliveryError(f"internal error in destination: {type(exc).__name__}: {exc}")
