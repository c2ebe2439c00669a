"""`QualityReports`: the monthly bulletin for the admin API, read from the running engine's store.

It receives what it uses: the store (the bulletin's SQL runs on the store's reader thread, off the event
loop) and a callable returning the router in force, whose routes and datasets say which fields are
required and which optional ones each route maps (a reload changes them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine.mapping.router import Router
from engine.quality.bulletin import bulletin, dataset_fields, route_fields
from engine.store import Store


class QualityReports:
    """Computes bulletins on demand; nothing is cached (a past month can be recomputed after a fix)."""

    def __init__(self, *, store: Store, router: Callable[[], Router]) -> None:
        self._store = store
        self._router = router

    async def monthly(self, month: str, *, org: str | None = None) -> dict[str, Any]:
        """The bulletin for `month` (`YYYY-MM`); ValueError for a malformed month."""
        router = self._router()
        datasets = dataset_fields(router.datasets) if router.datasets is not None else {}
        routes = route_fields(router.routes)
        now = time.time()
        return await self._store.read(
            lambda conn: bulletin(conn, month, datasets=datasets, routes=routes, org=org, generated_at=now,
                                  cipher=self._store.cipher))
