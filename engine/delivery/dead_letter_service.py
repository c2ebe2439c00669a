"""The dead-letter queue as a service: search, show, replay (re-send or re-map) and purge.

The admin API (engine/admin/dlq_api.py) and anything else that acts on dead letters call these
methods; the SQL lives in engine/delivery/dead_letters.py. After a replay commits, re-sent deliveries
wake their destination's worker (`wake`) and re-mapped messages go back to the pipeline
(`resubmit`): both are given by the engine, so this service knows neither the workers nor the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from engine.delivery import dead_letters
from engine.delivery.dead_letters import DeadLetterQuery
from engine.store import messages
from engine.store.connection import Connection
from engine.store.sqlite import Store
from engine.types import DeadLetterKind, StoredMessage


@dataclass(slots=True)
class ReplayReport:
    """What a replay did: deliveries re-queued, messages re-mapped, and why any dead letter was not."""

    requeued: int = 0
    remapped: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"requeued": self.requeued, "remapped": self.remapped, "skipped": self.skipped}


class DeadLetterService:
    """Reads and acts on dead letters through the store; every replay and purge is audited."""

    def __init__(self, *, store: Store, wake: Callable[[set[str]], None],
                 resubmit: Callable[[StoredMessage], None], refresh: Callable[[], None]) -> None:
        self.store = store
        self._wake = wake
        self._resubmit = resubmit
        self._refresh = refresh

    async def search(self, query: DeadLetterQuery) -> list[dict[str, Any]]:
        """Newest first; no payloads."""
        return await self.store.read(partial(dead_letters.search, q=query))

    async def count_between(self, start: float, end: float) -> int:
        """How many dead letters were created in [start, end) (purged ones no longer count)."""
        return await self.store.read(partial(dead_letters.count_between, start=start, end=end))

    async def get(self, dead_id: str, *, with_payload: bool) -> dict[str, Any] | None:
        """One dead letter, with its payload (delivery payload or raw message) when asked."""
        return await self.store.read(partial(dead_letters.get, dead_id=dead_id, with_payload=with_payload,
                                             cipher=self.store.cipher))

    async def purge(self, dead_id: str, *, who: str) -> bool:
        """Delete a dead letter for good (audited); False when there is none with that id."""
        now = time.time()
        done = await self.store.write(partial(dead_letters.purge, dead_id=dead_id, now=now, who=who))
        if done:
            self._refresh()
        return done

    async def replay(self, ids: list[str], *, remap: bool, who: str) -> ReplayReport:
        """Re-queue (or, with `remap` and always for mapping dead letters, re-map) each dead letter."""
        now = time.time()

        def run(conn: Connection) -> tuple[ReplayReport, set[str], list[str]]:
            # Fresh results per call: the store may run an op again after rolling its group back.
            report, wake, remapped = ReplayReport(), set[str](), list[str]()
            for dead_id in ids:
                kind = dead_letters.kind_of(conn, dead_id)
                if kind is None:
                    continue  # already removed by an earlier remap of the same message
                if remap or kind is DeadLetterKind.MAPPING:
                    message_id = dead_letters.prepare_remap(conn, dead_id, now=now, who=who)
                    if message_id is None:
                        report.skipped.append(f"{dead_id}: raw message no longer stored")
                    else:
                        remapped.append(message_id)
                else:
                    dest = dead_letters.requeue(conn, dead_id, now=now, who=who)
                    if dest is None:
                        report.skipped.append(f"{dead_id}: payload no longer stored")
                    else:
                        wake.add(dest)
                        report.requeued += 1
            report.remapped = len(remapped)
            return report, wake, remapped

        report, wake, remapped = await self.store.write(run)
        self._wake(wake)
        for message_id in remapped:
            msg = await self.store.read(partial(messages.get, message_id=message_id))
            if msg is not None:
                self._resubmit(msg)
        self._refresh()
        return report
