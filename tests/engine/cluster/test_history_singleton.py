"""The console's traffic history is one table for the whole cluster: every node adds its own minutes,
and only the holder of the `history` singleton rolls old minutes up into hours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.admin.traffic_history import HOUR, MINUTE, TrafficHistory
from engine.config import Config
from engine.runtime import Engine

CONFIG = """\
engine:
  store: {path: var/traffic.db}
  admin: {enabled: false}
channels:
  - {name: lab, type: mllp, enabled: false, mllp: {listen: "127.0.0.1:0"}}
"""
T0 = 1_800_000_000.0  # a whole hour (epoch seconds)


async def steps(engine: Engine) -> list[int]:
    rows = await engine.store.read(
        lambda c: c.execute("SELECT step FROM traffic_history ORDER BY at").fetchall())
    return [r[0] for r in rows]


async def written_two_days_later(engine: Engine, *, rolls_up: bool) -> list[int]:
    """A minute written at T0, then another minute written two days later (a roll-up falls due)."""
    history = TrafficHistory(channels=engine.channels, store=engine.store,
                             dead_between=engine.dead_letters.count_between, rolls_up=lambda: rolls_up)
    engine.channels["lab"].count("received", 3)
    await history.sample(now=T0 + 5)
    await history.sample(now=T0 + MINUTE + 5, flush_all=True)
    engine.channels["lab"].count("received", 1)
    await history.sample(now=T0 + 48 * HOUR, flush_all=True)
    return await steps(engine)


async def test_a_node_without_the_history_singleton_writes_minutes_but_rolls_nothing_up(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    assert set(await written_two_days_later(engine, rolls_up=False)) == {MINUTE}


async def test_the_holder_of_the_history_singleton_rolls_old_minutes_up(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    written = await written_two_days_later(engine, rolls_up=True)
    assert written[0] == HOUR and set(written[1:]) == {MINUTE}  # T0's minutes are now one hour row
