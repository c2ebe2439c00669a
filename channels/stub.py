"""A destination that records what it was sent, in memory: for tests and dry runs.

`fail_first: N` makes the first N sends fail transiently; `fail: permanent` fails every send permanently;
`delay: S` makes each send take S seconds (a slow destination).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

from channels.base import Outbound
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.types import DeliveryItem, DeliveryResult


class StubOutbound(Outbound):
    """Keeps every delivered item in `sent` (and, by destination name, in `StubOutbound.received`)."""

    received: ClassVar[dict[str, list[DeliveryItem]]] = {}

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        self.sent: list[DeliveryItem] = []
        self.attempts = 0
        self.fail_first = int(settings.get("fail_first", 0))
        self.fail = settings.get("fail")
        self.delay = float(settings.get("delay", 0))
        StubOutbound.received.setdefault(name, [])

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail == "permanent":
            raise PermanentDeliveryError("stub configured to fail permanently")
        if self.attempts <= self.fail_first:
            raise TransientDeliveryError(f"stub failure {self.attempts} of {self.fail_first}")
        self.sent.append(item)
        StubOutbound.received[self.name].append(item)
        return DeliveryResult(response="stored by stub")
