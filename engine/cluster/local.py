"""`LocalCluster`: one engine on SQLite is the whole cluster, leader of everything, nobody to notify.

No table, no timer, no write: SQLite already refuses a second engine on the same store
(engine/store/lock.py), so there is nobody to elect or wake. `/status` shows this one node.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine.cluster.base import Cluster, SelfReport
from engine.cluster.nodes import NodeInfo, NodeState


class LocalCluster(Cluster):
    """Holds every singleton; `notify_*` do nothing; claims are not filtered by owner."""

    def __init__(self, *, node_id: str, heartbeat: float = 2.0, lease: float = 15.0) -> None:
        super().__init__(node_id=node_id, heartbeat=heartbeat, lease=lease)
        self._report: Callable[[], SelfReport] | None = None
        self._started_at = time.time()
        self._state = NodeState.STARTING

    @property
    def owner(self) -> str | None:
        return None

    def holds(self, name: str) -> bool:
        return True

    def notify_wake(self, destinations: Iterable[str]) -> None:
        return None

    def notify_reload(self, version: str) -> None:
        return None

    async def start(self, report: Callable[[], SelfReport]) -> None:
        self._report = report
        self._started_at = time.time()
        self._state = NodeState.RUNNING

    async def stop(self) -> None:
        self._state = NodeState.STOPPED

    def describe(self) -> dict[str, Any]:
        me = self._report() if self._report is not None else SelfReport(config_version="", admin_url=None)
        node = NodeInfo(id=self.node_id, host=socket.gethostname(), pid=os.getpid(), admin_url=me.admin_url,
                        started_at=self._started_at, heartbeat_age=0.0, config_version=me.config_version,
                        state=self._state, channels=me.channels, singletons=tuple(self._wanted))
        return {"node_id": self.node_id, "backend": "local", "heartbeat": self.heartbeat,
                "lease": self.lease, "nodes": [node.as_dict()]}
