"""The admin HTTP API and console: server, auth, messages/DLQ/reload APIs, counter history, static files.

`EngineApi` is this room's contract with the running engine: the few things the handlers ask of it.
`engine.runtime.Engine` implements it; handlers call these methods and services, never SQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from engine.channel_runtime import ChannelRuntime
    from engine.cluster import Cluster
    from engine.config import Config
    from engine.delivery.dead_letter_service import DeadLetterService
    from engine.delivery.message_trail import MessageTrail
    from engine.delivery.service import DeliveryService
    from engine.quality.service import QualityReports
    from engine.reload import ReloadResult
    from engine.store.access_audit import AccessAudit
    from engine.store.sqlite import Store
    from engine.types import ChannelState


class EngineApi(Protocol):
    """What the admin API asks of the running engine (implemented by `engine.runtime.Engine`)."""

    @property
    def config(self) -> Config:
        """The config in force (reload info: file, version, load time)."""

    @property
    def channels(self) -> Mapping[str, ChannelRuntime]:
        """Inbound channels by name (control, history)."""

    @property
    def delivery(self) -> DeliveryService:
        """Per-destination status (history)."""

    @property
    def messages(self) -> MessageTrail:
        """Message search and each message's path (`/messages`)."""

    @property
    def dead_letters(self) -> DeadLetterService:
        """The dead-letter queue (`/dlq`)."""

    @property
    def quality(self) -> QualityReports:
        """The monthly data-quality bulletin (`/quality/monthly`)."""

    @property
    def audit(self) -> AccessAudit:
        """The access audit: raw reads, replays, purges, reloads, channel control (`/audit`)."""

    @property
    def store(self) -> Store:
        """The store: the console's traffic history keeps its own table there (traffic_history.py)."""

    @property
    def cluster(self) -> Cluster:
        """This node's view of the cluster: singletons (the traffic history's roll-up is one)."""

    @property
    def last_reload(self) -> ReloadResult | None:
        """The most recent reload attempt (`GET /reload`)."""

    def status(self) -> dict[str, Any]:
        """Everything `GET /status` shows."""

    async def readiness(self) -> list[str]:
        """Why the engine is not ready (`GET /readyz`); empty when ready."""

    async def control(self, channel: str, action: str) -> ChannelState:
        """`start|stop|pause|resume` a channel."""

    async def reload(self) -> ReloadResult:
        """Re-read the config file and routes; apply them if valid, else change nothing."""
