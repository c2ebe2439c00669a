"""Export periods follow the local clock of the configured time zone."""

from __future__ import annotations

import datetime as dt

import pytest

from channels.export.periods import Period, Schedule

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp()


def test_every_15_minutes_periods_are_aligned_to_local_quarter_hours() -> None:
    s = Schedule(every=900, timezone="Asia/Shanghai")
    assert s.period_at(at("2026-12-01T10:07:59")) == Period(at("2026-12-01T10:00"), at("2026-12-01T10:15"))
    assert s.period_at(at("2026-12-01T10:15:00")).start == at("2026-12-01T10:15")
    assert s.label(at("2026-12-01T10:15")) == "20261201T1015"
    assert s.after(Period(at("2026-12-01T23:45"), at("2026-12-02T00:00"))).start == at("2026-12-02T00:00")


def test_a_period_that_does_not_divide_the_day_ends_at_local_midnight() -> None:
    s = Schedule(every=7 * 3600, timezone="Asia/Shanghai")
    assert s.period_at(at("2026-12-01T22:00")) == Period(at("2026-12-01T21:00"), at("2026-12-02T00:00"))


def test_daily_at_0200_covers_0200_yesterday_to_0200_today() -> None:
    s = Schedule(daily_at=(2, 0), timezone="Asia/Shanghai")
    assert s.period_at(at("2026-12-01T01:59")) == Period(at("2026-11-30T02:00"), at("2026-12-01T02:00"))
    assert s.period_at(at("2026-12-01T02:00")) == Period(at("2026-12-01T02:00"), at("2026-12-02T02:00"))


def test_the_same_instant_falls_in_another_period_in_another_zone() -> None:
    utc = Schedule(daily_at=(0, 0), timezone="UTC")
    cst = Schedule(daily_at=(0, 0), timezone="Asia/Shanghai")
    t = at("2026-12-01T05:00")  # 2026-11-30T21:00Z
    assert cst.period_at(t).start == at("2026-12-01T00:00")
    assert utc.period_at(t).start == dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp()
    assert cst.parse("2026-12-01T10:15") == at("2026-12-01T10:15")


def test_a_schedule_needs_exactly_one_of_every_and_daily_at() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Schedule(every=60, daily_at=(1, 0))
    with pytest.raises(ValueError, match="at most 24 h"):
        Schedule(every=2 * 86400)
