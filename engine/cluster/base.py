"""The `Cluster` contract: who this node is, which singletons it holds, how nodes wake each other.

The engine's parts receive the `Cluster` (or the one thing they need from it) from `engine/runtime.py`:
the delivery service asks `holds()` before retention pruning and before sending a FIFO destination, the
export destination before writing a period, the pipeline's recovery sweep before taking over a dead
node's `received` messages. Everything is decided per heartbeat (`engine.cluster.heartbeat`), never per
message: the hot paths see at most a node id (delivery claims filter on `owner`).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_HEARTBEAT = 2.0
"""Seconds between two heartbeats of a node (config `engine.cluster.heartbeat`)."""
DEFAULT_LEASE = 15.0
"""Seconds after its last heartbeat at which a node's leases expire (config `engine.cluster.lease`)."""


class Singleton(enum.StrEnum):
    """Work that one node of the cluster does at a time (besides the per-destination ones below)."""

    RETENTION = "retention"
    """Pruning sent payloads and raw messages after `engine.store.retention_days`."""
    RECOVERY = "recovery"
    """Taking over `received` messages whose node is gone (mapped again by this node's pipeline)."""
    HISTORY = "history"
    """The hourly roll-up of the console's traffic history."""


def fifo_singleton(destination: str) -> str:
    """A FIFO destination is sent by one node at a time: the holder of this singleton."""
    return f"fifo:{destination}"


def export_singleton(destination: str) -> str:
    """An export destination's periods are written (and pruned) by one node at a time."""
    return f"export:{destination}"


@dataclass(frozen=True, slots=True)
class SelfReport:
    """What this node reports at each heartbeat (built by the runtime, which knows these things)."""

    config_version: str
    admin_url: str | None
    channels: tuple[str, ...] = field(default_factory=tuple)


WakeFn = Callable[[set[str]], None]
"""Called with destination names whose queued rows this node should claim now (a NOTIFY from another
node, or leases this node just took over)."""
ReloadFn = Callable[[str], Awaitable[None]]
"""Called with a config version announced by another node's reload."""


class Cluster(ABC):
    """One node's view of the cluster. `LocalCluster` (SQLite) is the degenerate single-node case."""

    def __init__(self, *, node_id: str, heartbeat: float = DEFAULT_HEARTBEAT,
                 lease: float = DEFAULT_LEASE) -> None:
        if heartbeat <= 0 or lease <= heartbeat:
            raise ValueError(f"engine.cluster: lease ({lease:g} s) must be longer than heartbeat"
                             f" ({heartbeat:g} s)")
        self.node_id = node_id
        self.heartbeat = heartbeat
        self.lease = lease
        self._wanted: set[str] = {s.value for s in Singleton}
        self._on_wake: list[WakeFn] = []
        self._on_reload: list[ReloadFn] = []
        self._on_holdings: list[Callable[[str, bool], None]] = []
        self._on_orphans: list[Callable[[], None]] = []

    # --- what the engine's parts ask ---------------------------------------------------------------

    @property
    @abstractmethod
    def owner(self) -> str | None:
        """The `owner` value this node's delivery claims and recovery filter on; None: no filter
        (one node owns everything, the SQL stays as it was before clusters)."""

    @abstractmethod
    def holds(self, name: str) -> bool:
        """True while this node holds the singleton `name` (a `Singleton` or `fifo_singleton(...)`)."""

    def want(self, name: str) -> None:
        """Contend for `name` from the next heartbeat on (destinations register theirs at start)."""
        self._wanted.add(name)

    @abstractmethod
    def notify_wake(self, destinations: Iterable[str]) -> None:
        """Tell the other nodes that rows of these destinations were queued for them to send."""

    @abstractmethod
    def notify_reload(self, version: str) -> None:
        """Tell the other nodes that this node reloaded its config (they re-read their own file)."""

    # --- callbacks the runtime registers ----------------------------------------------------------

    def on_wake(self, fn: WakeFn) -> None:
        self._on_wake.append(fn)

    def on_reload(self, fn: ReloadFn) -> None:
        self._on_reload.append(fn)

    def on_holdings(self, fn: Callable[[str, bool], None]) -> None:
        """`fn(name, held)` when this node takes or loses a singleton."""
        self._on_holdings.append(fn)

    def on_orphans(self, fn: Callable[[], None]) -> None:
        """`fn()` after `received` messages of a gone node became this node's (the pipeline rescans)."""
        self._on_orphans.append(fn)

    # --- lifecycle and status ---------------------------------------------------------------------

    @abstractmethod
    async def start(self, report: Callable[[], SelfReport]) -> None:
        """Register this node, contend for singletons, listen; `report` is read at every heartbeat."""

    @abstractmethod
    async def stop(self) -> None:
        """Release singletons and leases (another node takes over at once), mark this node stopped."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """`/status` → `cluster`: `{node_id, backend, heartbeat, lease, nodes: [NodeInfo.as_dict()]}`."""
