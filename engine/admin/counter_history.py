"""Short in-memory history of the engine's counters, for the console's sparklines and charts.

`/status` is a snapshot; ops want to see a trend. A `History` samples the counters `/status` shows every
`DEFAULT_INTERVAL` seconds into ring buffers: received messages per channel (the console turns the
deltas into messages per second over the last minute) and queue depth per destination over the last hour.
Nothing is persisted: after a restart the history starts again, which is what a live view needs.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from channels.base import ChannelContext

DEFAULT_INTERVAL = 2.0
"""Seconds between samples."""
CHANNEL_WINDOW = 60.0
"""Seconds of channel rate history kept (the console's sparkline spans one minute)."""
QUEUE_WINDOW = 3600.0
"""Seconds of queue depth history kept (the console's chart spans one hour)."""

log = structlog.get_logger("yonglink.history")

Sample = tuple[float, int]
"""(epoch seconds, value)."""


class History:
    """Ring buffers of (time, value), filled by `sample()`; `start()` runs it on a timer."""

    def __init__(self, *, channels: Mapping[str, ChannelContext],
                 destinations: Callable[[], list[dict[str, Any]]],
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.channels = channels
        self.destinations = destinations
        self.interval = interval
        self._received: dict[str, deque[Sample]] = {}
        self._queued: dict[str, deque[Sample]] = {}
        self._task: asyncio.Task[None] | None = None

    def _ring(self, rings: dict[str, deque[Sample]], name: str, window: float) -> deque[Sample]:
        ring = rings.get(name)
        if ring is None:
            ring = rings[name] = deque(maxlen=int(window / self.interval) + 2)
        return ring

    def sample(self, now: float | None = None) -> None:
        """Take one sample of every channel's `received` counter and every destination's queue depth.

        Reads the two parts of `/status` it needs, not the whole (data quality can be large): the
        channels' counters and the destinations' status (`DeliveryService.status`).
        """
        now = time.time() if now is None else now
        channels = {name: int(rt.stats.counts.get("received", 0))
                    for name, rt in self.channels.items()}
        for name, received in channels.items():
            self._ring(self._received, name, CHANNEL_WINDOW).append((now, received))
        for name in set(self._received) - set(channels):  # channel removed by a reload
            del self._received[name]
        dests = {d["name"]: int(d.get("queued", 0) or 0)  # `queued` includes those waiting to retry
                 for d in self.destinations()}
        for name, depth in dests.items():
            self._ring(self._queued, name, QUEUE_WINDOW).append((now, depth))
        for name in set(self._queued) - set(dests):
            del self._queued[name]

    def snapshot(self) -> dict[str, Any]:
        """What `GET /history` returns: per channel, messages/s between samples; per destination, depth."""
        rates: dict[str, list[list[float]]] = {}
        for name, ring in self._received.items():
            rates[name] = [
                [t1, round(max(0, v1 - v0) / (t1 - t0), 3) if t1 > t0 else 0.0]
                for (t0, v0), (t1, v1) in itertools.pairwise(ring)
            ]
        return {
            "interval_seconds": self.interval,
            "channels": {"window_seconds": CHANNEL_WINDOW, "messages_per_second": rates},
            "destinations": {"window_seconds": QUEUE_WINDOW,
                             "queue_depth": {n: [list(p) for p in r] for n, r in self._queued.items()}},
        }

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="yonglink-history")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a status() hiccup must not end the history; try again next tick
                log.exception("history sample failed")
            await asyncio.sleep(self.interval)
