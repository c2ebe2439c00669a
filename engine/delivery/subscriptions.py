"""Destinations that subscribe to routes: `destinations[].routes: ["*"]` in the config.

A route file may name its destinations itself (`destinations: [platform]`), but shipped routes cannot
know a deployment's destination names. So a destination can also subscribe to routes by id glob
(Rhapsody/Camel style): `routes: ["*"]` takes every route's records, `routes: ["adt_*"]` the ADT ones.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable

from engine.config import DestinationConfig
from engine.types import RouteResult


class Subscriptions:
    """Adds subscribing destinations to each route result that carries something to deliver."""

    def __init__(self, destinations: Iterable[DestinationConfig]) -> None:
        self._patterns = [(d.name, tuple(d.options.get("routes", ()))) for d in destinations
                          if d.options.get("enabled", True) and d.options.get("routes")]
        self._cache: dict[str, tuple[str, ...]] = {}

    def subscribers(self, route_id: str) -> tuple[str, ...]:
        """Destination names whose patterns match `route_id` (a `#2` suffix for repeats is ignored)."""
        base = route_id.split("#", 1)[0]
        found = self._cache.get(base)
        if found is None:
            found = tuple(name for name, patterns in self._patterns
                          if any(fnmatch.fnmatchcase(base, p) for p in patterns))
            self._cache[base] = found
        return found

    def apply(self, result: RouteResult) -> RouteResult:
        if not self._patterns or (result.record is None and not result.passthrough):
            return result
        extra = [d for d in self.subscribers(result.route_id) if d not in result.destinations]
        if not extra:
            return result
        return dataclasses.replace(result, destinations=(*result.destinations, *extra))
