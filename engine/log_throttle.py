"""At most one log line per interval for events a hostile peer can repeat at will.

A peer that sends a byte outside a frame every millisecond, or opens connections in a loop against
`max_connections`, must not be able to fill the disk with WARNING lines or burn the CPU formatting
them. `LogThrottle.allow(key)` answers whether to log now and how many events of that key were
suppressed since the last line, so the line that is written still tells the whole story
(`suppressed=...`). It keeps no task and no timer: the check is a clock read and a dict lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_LOG_INTERVAL = 10.0
"""Seconds between two lines about the same kind of event (per channel)."""


class LogThrottle:
    """Per-key rate limit: the first event logs, then one per `interval` seconds, counting the rest."""

    __slots__ = ("_clock", "_last", "_suppressed", "interval")

    def __init__(self, interval: float = DEFAULT_LOG_INTERVAL, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """(log now?, events of `key` suppressed since the last line logged)."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)
