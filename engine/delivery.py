"""Outbound delivery (placeholder until the delivery room lands: records nothing, sends nothing)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from engine.types import RouteResult, StoredMessage

if TYPE_CHECKING:
    from engine.runtime import Engine


class DeliveryService:
    """Creates delivery rows inside the pipeline's transaction and runs one worker set per destination."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ddl(self) -> list[str]:
        return []

    def record(self, conn: sqlite3.Connection, message: StoredMessage, results: list[RouteResult],
               now: float) -> set[str]:
        return set()

    def wake(self, destinations: set[str]) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def status(self) -> list[dict[str, Any]]:
        return []
