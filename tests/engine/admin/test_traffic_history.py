"""The console's traffic history: received / failed / dead per minute, kept in the store and rolled up."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import delivery_support as S
import pytest

from engine.admin.traffic_history import HOUR, MINUTE, TrafficHistory, read_points, record, roll_up
from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends

CONFIG = """\
engine:
  store:
    path: var/traffic.db
  admin:
    listen: 127.0.0.1:0
channels:
  - name: lab
    type: mllp
    enabled: false
    mllp:
      listen: 127.0.0.1:0
destinations:
  - name: sink
    type: stub
"""
T0 = 1_800_000_000.0  # a whole hour (epoch seconds)


def traffic(engine: Engine) -> TrafficHistory:
    return TrafficHistory(channels=engine.channels, store=engine.store,
                          dead_between=engine.dead_letters.count_between)


async def test_each_minute_counts_received_failed_and_dead_and_the_minute_in_progress_is_shown(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    history = traffic(engine)
    await history.start()
    lab = engine.channels["lab"]
    await history.sample(now=T0 + 5)
    lab.count("received", 7)
    lab.count("rejected", 2)
    await history.sample(now=T0 + 30)
    lab.count("received", 3)
    lab.count("failed", 1)
    await history.sample(now=T0 + 65)  # minute T0 ended: its row is written
    lab.count("received", 4)
    await history.sample(now=T0 + 70)
    chart = await history.series("1h", now=T0 + 75)
    assert chart["step_seconds"] == MINUTE
    assert [p[:3] for p in chart["points"]] == [[T0, 7, 2], [T0 + 60, 7, 1]]
    assert chart["totals"]["received"] == 14
    await history.stop()


async def test_the_history_survives_a_restart_of_the_engine(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """Stopping writes the minute in progress; a new engine on the same store reads it back, and a
    dead letter counts in the minute it was created."""
    config = make_config(CONFIG)
    engine = await engine_factory(config)
    await S.inject(engine, error="route failed", destinations=())  # one mapping dead letter, now
    engine.channels["lab"].count("received", 5)
    await engine.stop()  # the admin app's cleanup writes the minute in progress

    engine = await engine_factory(config)
    async with aiohttp.ClientSession() as http, \
            http.get(f"{engine.admin.url}/history/traffic?range=24h") as resp:  # type: ignore[union-attr]
        chart = await resp.json()
    assert chart["totals"] == {"received": 5, "failed": 0, "dead": 1}
    async with aiohttp.ClientSession() as http, \
            http.get(f"{engine.admin.url}/history/traffic?range=2y") as resp:  # type: ignore[union-attr]
        assert resp.status == 400


def test_minutes_older_than_a_day_are_summed_into_hours_and_long_ranges_read_hours(
        raw_connection: Any) -> None:
    """A minute 59 minutes into an hour is summed into that hour, not the next (SQLite's CAST truncates,
    PostgreSQL's rounds: its SQL floors)."""
    conn = raw_connection
    old = T0 - 2 * 24 * HOUR
    for i in range(90):  # 1 h 30 min of old minutes, 1 received each
        record(conn, step=MINUTE, at=old + i * MINUTE, received=1, failed=0, dead=i % 2)
    record(conn, step=MINUTE, at=T0 - MINUTE, received=5, failed=1, dead=0)  # a recent minute
    roll_up(conn, now=T0)
    rows = conn.execute("SELECT step, at, received, dead FROM traffic_history ORDER BY step, at").fetchall()
    assert rows == [(MINUTE, T0 - MINUTE, 5, 0), (HOUR, old, 60, 30), (HOUR, old + HOUR, 30, 15)]
    assert read_points(conn, since=old, step=HOUR) == [[old, 60, 0, 30], [old + HOUR, 30, 0, 15],
                                                       [T0 - HOUR, 5, 1, 0]]
    roll_up(conn, now=T0 + 40 * 24 * HOUR)  # hour rows beyond 35 days go
    assert conn.execute("SELECT count(*) FROM traffic_history WHERE step = ?", (HOUR,)).fetchone() == (0,)


async def test_the_minute_in_progress_counts_before_its_first_sample(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """The banner's "dead letters in the last hour" must not wait for the sampler's next tick."""
    engine: Engine = await engine_factory(make_config(CONFIG))
    history = traffic(engine)
    await history.start()
    engine.channels["lab"].count("received", 2)
    await S.inject(engine, error="route failed", destinations=())
    chart = await history.series("1h")
    assert chart["totals"] == {"received": 2, "failed": 0, "dead": 1}
    await history.stop()
