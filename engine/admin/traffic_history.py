"""Received, failed and dead messages per minute, kept in the store so the console's charts survive restarts.

`TrafficHistory` samples the channels' counters every `SAMPLE_EVERY` seconds (in memory, off the hot
path: the counters are plain integers the channels keep anyway) and, once a minute has ended, writes one
row for it (`durable=False`: losing the last minutes of history to a power cut is acceptable; nothing
is acknowledged on it). Dead letters are counted from the dead-letter table by creation time, through
`DeadLetterService.count_between`, so they include mapping and delivery dead letters.

Roll-up (like RRD / Prometheus downsampling): per-minute rows are kept for `MINUTE_ROWS_FOR` (24 h);
older ones are summed into per-hour rows, kept for `HOUR_ROWS_FOR` (35 days). `series(range)` answers
the 1 h / 24 h charts from minute rows and the 7 d / 30 d charts from hour rows (plus the recent minutes
summed per hour), with the minute in progress included.

Its table comes with the store's schema (migration 0001).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from channels.base import ChannelContext
from engine.errors import StoreError
from engine.store.connection import Connection, Dialect, dialect_of
from engine.store.sqlite import Store

MINUTE = 60
HOUR = 3600
SAMPLE_EVERY = 5.0
"""Seconds between reads of the channels' counters."""
MINUTE_ROWS_FOR = 24 * HOUR
"""Age after which per-minute rows are summed into per-hour rows."""
HOUR_ROWS_FOR = 35 * 24 * HOUR
"""Age after which per-hour rows are dropped (the longest chart spans 30 days)."""
RANGES: dict[str, tuple[int, int]] = {"1h": (HOUR, MINUTE), "24h": (24 * HOUR, MINUTE),
                                      "7d": (7 * 24 * HOUR, HOUR), "30d": (30 * 24 * HOUR, HOUR)}
"""Chart range → (span, step) in seconds."""

# Table: traffic_history, one row per minute (`step` 60) or hour (`step` 3600) starting at `at` (epoch
# seconds) (engine/store/migrations/0001_schema.*.sql).

log = structlog.get_logger("yonglink.history")

CountBetween = Callable[[float, float], Awaitable[int]]
"""Dead letters created in [start, end) (DeadLetterService.count_between)."""


@dataclass(slots=True)
class Bucket:
    """Counts of one minute gathered in memory before its row is written."""

    at: float
    received: int = 0
    failed: int = 0


def record(conn: Connection, *, step: int, at: float, received: int, failed: int, dead: int) -> None:
    """Add a bucket's counts (a restart mid-minute writes the same minute twice: received and failed
    add up; dead, counted from the dead-letter table for the whole minute, is the larger)."""
    larger = "max" if dialect_of(conn) is Dialect.SQLITE else "greatest"  # the larger of two values
    conn.execute("INSERT INTO traffic_history (step, at, received, failed, dead) VALUES (?,?,?,?,?)"
                 " ON CONFLICT (step, at) DO UPDATE"
                 " SET received = traffic_history.received + excluded.received,"
                 " failed = traffic_history.failed + excluded.failed,"
                 f" dead = {larger}(traffic_history.dead, excluded.dead)",
                 (step, at, received, failed, dead))


def roll_up(conn: Connection, *, now: float) -> None:
    """Sum minute rows older than `MINUTE_ROWS_FOR` (whole hours) into hour rows; drop old hour rows."""
    cutoff = math.floor((now - MINUTE_ROWS_FOR) / HOUR) * HOUR
    conn.execute("INSERT INTO traffic_history (step, at, received, failed, dead)"
                 f" SELECT ?, {_hour_of(conn)}, sum(received), sum(failed), sum(dead)"
                 " FROM traffic_history WHERE step = ? AND at < ? GROUP BY 2 ORDER BY 2"
                 " ON CONFLICT (step, at) DO UPDATE"
                 " SET received = traffic_history.received + excluded.received,"
                 " failed = traffic_history.failed + excluded.failed,"
                 " dead = traffic_history.dead + excluded.dead",
                 (HOUR, HOUR, HOUR, MINUTE, cutoff))
    conn.execute("DELETE FROM traffic_history WHERE step = ? AND at < ?", (MINUTE, cutoff))
    conn.execute("DELETE FROM traffic_history WHERE step = ? AND at < ?", (HOUR, now - HOUR_ROWS_FOR))


def _hour_of(conn: Connection) -> str:
    """The start of the hour of `at` (two parameters: the hour, twice). SQLite's CAST to INTEGER
    truncates; PostgreSQL's rounds (`at` 59 minutes into an hour would land in the next), so it floors."""
    if dialect_of(conn) is Dialect.SQLITE:
        return "CAST(at / ? AS INTEGER) * ?"
    return "floor(at / ?) * ?"


def read_points(conn: Connection, *, since: float, step: int) -> list[list[float]]:
    """[at, received, failed, dead] per `step` from `since`, oldest first (minute rows summed per hour
    when `step` is an hour)."""
    if step == MINUTE:
        rows = conn.execute("SELECT at, received, failed, dead FROM traffic_history"
                            " WHERE step = ? AND at >= ? ORDER BY at", (MINUTE, since)).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {_hour_of(conn)} AS h, sum(received), sum(failed), sum(dead)"
            " FROM traffic_history WHERE at >= ? GROUP BY h ORDER BY h", (HOUR, HOUR, since)).fetchall()
    return [[float(r[0]), r[1], r[2], r[3]] for r in rows]


class TrafficHistory:
    """Samples the channels' counters; writes a row per minute; answers chart series by range."""

    def __init__(self, *, channels: Mapping[str, ChannelContext], store: Store, dead_between: CountBetween,
                 sample_every: float = SAMPLE_EVERY, rolls_up: Callable[[], bool] = lambda: True) -> None:
        self.channels = channels
        self.rolls_up = rolls_up
        """True while this node does the hourly roll-up (in a cluster, the `history` singleton holder:
        the rows are shared, every node adds its own minutes to them)."""
        self.store = store
        self.dead_between = dead_between
        self.sample_every = sample_every
        self._last: dict[str, tuple[int, int]] = {}  # channel → (received, rejected + failed) last seen
        self._bucket: Bucket | None = None
        self._next_roll_up = 0.0
        self._task: asyncio.Task[None] | None = None

    def _counts(self) -> dict[str, tuple[int, int]]:
        out = {}
        for name, rt in self.channels.items():
            c = rt.stats.counts
            out[name] = (int(c.get("received", 0)), int(c.get("rejected", 0)) + int(c.get("failed", 0)))
        return out

    async def start(self) -> None:
        """Take the counters as the baseline, and sample on a timer."""
        self._last = self._counts()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="yonglink-traffic-history")

    async def stop(self) -> None:
        """Stop sampling and write the minute in progress (so a restart loses none of it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.sample(flush_all=True)
        except StoreError:
            log.warning("cannot write the last minute of traffic history")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.sample_every)
            try:
                await self.sample()
            except StoreError:
                log.warning("cannot write traffic history; will try again")
            except Exception:  # the history must not end over one bad sample
                log.exception("traffic history sample failed")

    def _growth(self, current: dict[str, tuple[int, int]]) -> tuple[int, int]:
        """Received and failed messages counted since the last sample."""
        received = failed = 0
        for name, (rec, fail) in current.items():
            prev_rec, prev_fail = self._last.get(name, (0, 0))
            # a counter below its last value was reset (channel re-created by a reload): count from 0
            received += rec - prev_rec if rec >= prev_rec else rec
            failed += fail - prev_fail if fail >= prev_fail else fail
        return received, failed

    async def sample(self, now: float | None = None, *, flush_all: bool = False) -> None:
        """Add the counters' growth since the last sample to the current minute; write ended minutes."""
        now = time.time() if now is None else now
        current = self._counts()
        received, failed = self._growth(current)
        self._last = current
        minute = math.floor(now / MINUTE) * MINUTE
        bucket = self._bucket
        if bucket is not None and (bucket.at != minute or flush_all):
            end = min(bucket.at + MINUTE, now)
            await self._write(bucket, end, now)
            bucket = None
        if bucket is None:
            bucket = Bucket(at=minute)
        bucket.received += received
        bucket.failed += failed
        self._bucket = bucket
        if flush_all and (bucket.received or bucket.failed):
            await self._write(bucket, now, now)
            self._bucket = Bucket(at=minute)

    async def _write(self, bucket: Bucket, end: float, now: float) -> None:
        dead = await self.dead_between(bucket.at, end)
        roll = now >= self._next_roll_up and self.rolls_up()
        if roll:
            self._next_roll_up = now + HOUR

        def op(conn: Connection) -> None:
            record(conn, step=MINUTE, at=bucket.at, received=bucket.received, failed=bucket.failed, dead=dead)
            if roll:
                roll_up(conn, now=now)

        await self.store.write(op, durable=False)

    async def series(self, name: str, now: float | None = None) -> dict[str, Any]:
        """The chart of range `name` (`RANGES`): points [at, received, failed, dead] and totals."""
        span, step = RANGES[name]
        now = time.time() if now is None else now
        since = math.floor((now - span) / step) * step + step
        points = await self.store.read(partial(read_points, since=since, step=step))
        # the minute in progress: its bucket so far plus what the counters grew since the last sample
        minute = math.floor(now / MINUTE) * MINUTE
        bucket = self._bucket if self._bucket is not None and self._bucket.at == minute else Bucket(at=minute)
        grown_received, grown_failed = self._growth(self._counts())
        received, failed = bucket.received + grown_received, bucket.failed + grown_failed
        dead = await self.dead_between(minute, now + 1)
        at = math.floor(minute / step) * step
        if points and points[-1][0] == at:
            last = points[-1]
            points[-1] = [at, last[1] + received, last[2] + failed,
                          max(last[3], dead) if step == MINUTE else last[3] + dead]
        else:
            points.append([float(at), received, failed, dead])
        totals = {key: sum(int(p[i]) for p in points)
                  for i, key in ((1, "received"), (2, "failed"), (3, "dead"))}
        return {"range": name, "step_seconds": step, "span_seconds": span, "now": now,
                "series": ["received", "failed", "dead"], "points": points, "totals": totals}
