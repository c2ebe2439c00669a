"""Export periods: `every N` minutes aligned to local midnight, or `daily_at HH:MM`, in one time zone.

Periods are computed from wall-clock time in the configured zone (IANA, via zoneinfo), so a 15-minute
schedule writes 00:00-00:15, 00:15-00:30 … of the local day, and `daily_at: "02:00"` writes one file
for 02:00 yesterday - 02:00 today. On a day with a DST change the day's last `every` period ends at
the next local midnight (China has had no DST since 1991; the rule matters only for other zones).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DEFAULT_TIMEZONE = "Asia/Shanghai"
"""The Ningbo platform's zone (China Standard Time, UTC+8)."""
DAY = 86400.0


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """[start, end) in epoch seconds."""

    start: float
    end: float


class Schedule:
    """Maps an instant to the period that holds it; exactly one of `every` / `daily_at` is set."""

    def __init__(self, *, every: float | None = None, daily_at: tuple[int, int] | None = None,
                 timezone: str = DEFAULT_TIMEZONE) -> None:
        if (every is None) == (daily_at is None):
            raise ValueError("an export schedule needs exactly one of `every` and `daily_at`")
        if every is not None and not 0 < every <= DAY:
            raise ValueError("`every` must be more than 0 s and at most 24 h")
        self.every = every
        self.daily_at = daily_at
        self.tz = ZoneInfo(timezone)

    @classmethod
    def from_settings(cls, every: float | None, daily_at: str | None, timezone: str | None) -> Schedule:
        at = None
        if daily_at:
            hh, mm = daily_at.split(":")
            at = (int(hh), int(mm))
        return cls(every=every, daily_at=at, timezone=timezone or DEFAULT_TIMEZONE)

    def _at(self, day: dt.date, hour: int = 0, minute: int = 0) -> float:
        return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz).timestamp()

    def period_at(self, t: float) -> Period:
        """The period holding instant `t`."""
        day = dt.datetime.fromtimestamp(t, self.tz).date()
        if self.every is not None:
            midnight = self._at(day)
            nxt = self._at(day + dt.timedelta(days=1))
            start = midnight + ((t - midnight) // self.every) * self.every
            return Period(start, min(start + self.every, nxt))
        if self.daily_at is None:  # unreachable: __init__ requires one of the two
            raise ValueError("schedule has neither `every` nor `daily_at`")
        hour, minute = self.daily_at
        today = self._at(day, hour, minute)
        if t >= today:
            return Period(today, self._at(day + dt.timedelta(days=1), hour, minute))
        return Period(self._at(day - dt.timedelta(days=1), hour, minute), today)

    def describe(self) -> str:
        """`every 900s` or `daily at 02:00` (for `/status`)."""
        if self.every is not None:
            return f"every {self.every:g}s"
        hour, minute = self.daily_at or (0, 0)
        return f"daily at {hour:02d}:{minute:02d}"

    def after(self, p: Period) -> Period:
        """The period that follows `p`."""
        return self.period_at(p.end)

    def label(self, t: float) -> str:
        """`20261201T1015` in the schedule's zone (file names)."""
        return dt.datetime.fromtimestamp(t, self.tz).strftime("%Y%m%dT%H%M%S" if self._seconds else
                                                              "%Y%m%dT%H%M")

    @property
    def _seconds(self) -> bool:
        return self.every is not None and self.every % 60 != 0

    def iso(self, t: float) -> str:
        """ISO 8601 with the zone's offset (manifests)."""
        return dt.datetime.fromtimestamp(t, self.tz).isoformat()

    def parse(self, text: str) -> float:
        """An instant from `2026-12-01`, `2026-12-01T10:15` (local to the schedule) or with an offset."""
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.timestamp()
