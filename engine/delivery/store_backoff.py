"""Back off when the store refuses a destination's bookkeeping (store full, disk full, I/O errors).

When a send succeeded but cannot be recorded, the row is still `queued` and is sent again (at-least-
once). Done at once, that is a hot loop: with the store at its size cap, 744 "cannot record sent
deliveries" lines a second at 131% CPU were measured, and the destination received the same records
over and over. So after such a failure the worker's senders pause (`store_pause`: 1 s, doubling per
failed resumption, capped at 30 s); while the store still reports itself full (`Store.full`) they do
not send at all, and the failure is logged once, then once per `SUMMARY_EVERY` with the count. The
senders look at `Store.full` at least once a second, so they resume within a second of space being
freed. The first recorded success clears it (logged once at WARNING).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from engine.log_throttle import LogThrottle

STORE_PAUSE_INITIAL = 1.0
"""Seconds the senders pause after the first store failure."""
STORE_PAUSE_CAP = 30.0
"""Longest pause between two attempts while the store keeps failing."""
SUMMARY_EVERY = 60.0
"""Seconds between two log lines about the same store failure."""


def store_pause(failures: int, *, initial: float = STORE_PAUSE_INITIAL,
                cap: float = STORE_PAUSE_CAP) -> float:
    """Pause after the `failures`-th consecutive store failure (1-based): initial * 2**(n-1), capped."""
    return float(min(cap, initial * 2.0 ** min(max(failures, 1) - 1, 32)))


class StoreBackoff:
    """One destination's view of the store's health; `blocked(full)` says whether to send now."""

    def __init__(self, log: structlog.typing.FilteringBoundLogger, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._throttle = LogThrottle(SUMMARY_EVERY, clock=clock)
        self.failures = 0
        self.resume_at = 0.0
        self.last_error: str | None = None
        self.last_error_at: float | None = None  # wall clock, for `/status`
        self._seen_full = False  # the store said it was full during this episode

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, what: str, count: int) -> None:
        """The store refused to record `count` rows (`what` is the log event); pause the senders."""
        now = self._clock()
        if now >= self.resume_at:  # one step per pause, however many senders hit it at once
            self.failures += 1
            self.resume_at = now + store_pause(self.failures)
        self.last_error, self.last_error_at = what, time.time()
        ok, suppressed = self._throttle.allow(what)
        if ok:
            self._log.error(what, count=count, suppressed=suppressed,
                            pause_seconds=round(self.resume_at - now, 1))

    def succeeded(self) -> None:
        if self.failures:
            self._log.warning("store accepts delivery records again", failures=self.failures)
            self.failures, self.resume_at, self.last_error = 0, 0.0, None
            self._seen_full = False

    def blocked(self, full: bool) -> bool:
        """True while paused, or while the store says it is still full (then pause again, longer).
        A store that was full and has room again ends the pause at once."""
        if not self.failures:
            return False
        if full:
            self._seen_full = True
        elif self._seen_full:
            self._seen_full = False
            self.resume_at = 0.0
            return False
        now = self._clock()
        if now < self.resume_at:
            return True
        if full:
            self.failures += 1
            self.resume_at = now + store_pause(self.failures)
            return True
        return False

    async def wait(self) -> None:
        """Sleep until the pause ends, or for a second (to look at `Store.full` again)."""
        await asyncio.sleep(min(1.0, max(0.0, self.resume_at - self._clock())))
