"""The mapping room (placeholder until it lands: no routes, every message is filtered)."""

from __future__ import annotations

from typing import Any

from engine.config import Config
from engine.metrics import Metrics
from engine.types import RouteResult, StoredMessage


class Router:
    """Selects the routes for a message and maps it with each."""

    def route(self, msg: StoredMessage) -> list[RouteResult]:
        return []

    def quality_snapshot(self) -> dict[str, Any]:
        return {}


def load_router(config: Config, *, metrics: Metrics | None = None) -> Router:
    """Load every route file named by the config."""
    return Router()
