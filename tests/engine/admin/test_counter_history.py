"""The console's history buffers: message rates per channel and queue depth per destination."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.admin.counter_history import CHANNEL_WINDOW, History
from engine.config import Config
from engine.runtime import Engine

CONFIG = """\
engine:
  store:
    path: var/history.db
  admin:
    enabled: false
channels:
  - name: adt
    type: mllp
    enabled: false
    mllp:
      listen: 127.0.0.1:0
destinations:
  - name: sink
    type: stub
"""


async def test_rates_are_received_deltas_per_second_and_the_ring_keeps_one_minute(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """10 messages between two samples 2 s apart is 5 msg/s; samples older than the window fall out."""
    engine: Engine = await engine_factory(make_config(CONFIG))
    history = History(channels=engine.channels, destinations=engine.delivery.status, interval=2.0)
    history.sample(now=1000.0)
    engine.channels["adt"].count("received", 10)
    history.sample(now=1002.0)
    snap = history.snapshot()
    assert snap["channels"]["messages_per_second"]["adt"] == [[1002.0, 5.0]]
    assert snap["destinations"]["queue_depth"]["sink"] == [[1000.0, 0], [1002.0, 0]]

    for i in range(100):
        history.sample(now=1004.0 + 2 * i)
    rates = history.snapshot()["channels"]["messages_per_second"]["adt"]
    assert rates[-1][0] - rates[0][0] <= CHANNEL_WINDOW + 2.0
    assert all(v == 0.0 for _, v in rates)


async def test_a_channel_removed_by_a_reload_leaves_the_history(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """Series follow the channels it is given, so a removed channel's sparkline disappears (the engine
    gives its live channel set, which a reload edits)."""
    engine: Engine = await engine_factory(make_config(CONFIG))
    channels = dict(engine.channels)
    history = History(channels=channels, destinations=engine.delivery.status)
    history.sample(now=1.0)
    del channels["adt"]
    history.sample(now=3.0)
    assert history.snapshot()["channels"]["messages_per_second"] == {}
