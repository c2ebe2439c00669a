"""The running engine: store, pipeline, delivery, channels and admin API, wired from one `Config`.

`ChannelRuntime` is the `ChannelContext` each inbound connector talks to: `accept` commits before the
connector acknowledges, duplicates are answered from the store, and every outcome is counted for
`/status` and `/metrics`.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import structlog

from channels import inbound_types
from channels.base import ChannelStats, Inbound
from engine import __version__
from engine.config import ChannelConfig, Config
from engine.delivery.service import DeliveryService
from engine.delivery.subscriptions import Subscriptions
from engine.errors import MappingUnavailable
from engine.metrics import Metrics
from engine.pipeline import Pipeline
from engine.store import messages
from engine.store.ingest import IngestBatcher, Landed, resolve
from engine.store.sqlite import CORE_DDL, SqliteStore, Store
from engine.types import (
    Acceptance,
    ChannelState,
    InboundMessage,
    MessageState,
    ProcessingOutcome,
    RouteResult,
    StoredMessage,
)

if TYPE_CHECKING:
    from engine.mapping.pool import MappingPool

log = structlog.get_logger("yonglink")

STOP_STEP_TIMEOUT = 15.0
"""Seconds each component may take to stop before shutdown goes on without it."""


class ChannelRuntime:
    """One inbound channel's context, state machine and counters."""

    def __init__(self, engine: Engine, config: ChannelConfig) -> None:
        self.engine = engine
        self.config = config
        self.name = config.name
        self.facility = engine.config.engine.facility
        self.config_dir = engine.config.file.resolve().parent
        self.stats = ChannelStats()
        self.state = ChannelState.STOPPED
        self.log = structlog.get_logger("yonglink.channel").bind(channel=config.name)
        self.inbound: Inbound | None = None
        self._counters = {outcome: engine.metrics.messages.labels(config.name, outcome)
                          for outcome in ChannelStats.OUTCOMES}
        self._ack_latency = engine.metrics.ack_latency.labels(config.name)

    # --- ChannelContext ---------------------------------------------------------------------------

    async def accept(self, msg: InboundMessage) -> Acceptance:
        fut: asyncio.Future[Acceptance] = asyncio.get_running_loop().create_future()
        self.accept_soon(msg, functools.partial(resolve, fut))
        return await fut

    def accept_soon(self, msg: InboundMessage, landed: Landed) -> None:
        """`accept` without a future: `landed(acceptance or exception)` is called on the loop after COMMIT.

        Counting and handing to the pipeline happen first, in the batch's commit callback, so they do
        not depend on the caller still being there (a peer that hung up): a committed message never
        waits for a restart to be processed.
        """
        self.engine.ingest.submit_soon(msg, functools.partial(self._landed, msg, landed))

    def _landed(self, msg: InboundMessage, landed: Landed, result: Acceptance | BaseException) -> None:
        if isinstance(result, Acceptance):
            if result.duplicate:
                self.count("duplicate")
            else:
                self.count("received")
                if result.reused:  # same MSH-4 + MSH-10 as an earlier message, other content
                    self.count("control_id_reused")
                if result.processed:  # stored `filtered` already: no route can select this channel
                    self.count("filtered")
                else:
                    self.engine.pipeline.submit(StoredMessage(
                        id=result.message_id, channel=msg.channel, received_at=msg.received_at,
                        content_type=msg.content_type, state=MessageState.RECEIVED, raw=msg.raw,
                        peer=msg.peer, charset=msg.charset, sending_application=msg.sending_application,
                        sending_facility=msg.sending_facility, control_id=msg.control_id,
                        message_type=msg.message_type, metadata=msg.metadata))
        landed(result)

    async def reject(self, msg: InboundMessage, reason: str) -> str:
        commit = self.engine.store.write(lambda conn: messages.insert(
            conn, msg, dedupe_window=0, state=MessageState.REJECTED, error=reason))
        acc = await asyncio.shield(commit)
        self.count("rejected")
        self.error(f"rejected input: {reason}")
        return acc.message_id

    async def wait_processed(self, message_id: str, timeout: float) -> ProcessingOutcome | None:  # noqa: ASYNC109
        return await self.engine.pipeline.wait(message_id, timeout)

    def error(self, text: str) -> None:
        self.stats.last_error = text
        self.stats.last_error_at = time.time()

    def set_state(self, state: ChannelState) -> None:
        if state != self.state:
            self.log.info("channel state", state=state.value)
        self.state = state

    def observe_ack(self, seconds: float) -> None:
        """Record the time from a complete inbound message to its acknowledgement being written."""
        self._ack_latency.observe(seconds)

    def count(self, outcome: str, n: int = 1) -> None:
        self.stats.counts[outcome] = self.stats.counts.get(outcome, 0) + n
        counter = self._counters.get(outcome)
        if counter is None:  # an outcome a connector names itself
            counter = self._counters[outcome] = self.engine.metrics.messages.labels(self.name, outcome)
        counter.inc(n)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start (or resume) the inbound connector; a failure leaves the channel in `error`."""
        if self.state in (ChannelState.STARTED, ChannelState.STARTING):
            return
        self.set_state(ChannelState.STARTING)
        self.engine.pipeline.hold(self.name, False)
        cls = inbound_types()[self.config.type]
        self.inbound = cls(name=self.name, settings=self.config.settings, context=self)
        try:
            await self.inbound.start()
        except Exception as exc:
            self.error(f"cannot start: {exc}")
            self.set_state(ChannelState.ERROR)
            self.log.error("channel failed to start", error=str(exc))
            self.inbound = None
            return
        self.set_state(ChannelState.STARTED)

    async def halt(self, state: ChannelState) -> None:
        """`paused`: source closed, its messages keep flowing; `stopped`: processing held too."""
        if self.inbound is not None:
            await self.inbound.stop()
            self.inbound = None
        self.engine.pipeline.hold(self.name, state is ChannelState.STOPPED)
        self.set_state(state)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.config.type, "enabled": self.config.enabled,
            "state": self.state.value, **(self.inbound.describe() if self.inbound else {}),
            "counters": dict(self.stats.counts), "connections_open": self.stats.connections_open,
            "last_error": ({"at": self.stats.last_error_at, "text": self.stats.last_error}
                           if self.stats.last_error else None),
        }


class Engine:
    """Everything yonglink runs, started and stopped in dependency order."""

    def __init__(self, config: Config, *, store: Store | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.store: Store = store or SqliteStore(config.engine.store.path,
                                                 max_size=config.engine.store.max_size)
        from engine.mapping import load_router  # the mapping room; heavy imports kept off CLI start-up

        self.router = load_router(config, metrics=self.metrics)
        self.ingest = IngestBatcher(self.store, dedupe_window=config.engine.store.dedupe_window,
                                    routable=lambda channel: bool(self.router.may_route(channel)))
        self.delivery = DeliveryService(self)
        self.pipeline = Pipeline(store=self.store, route=self.router.route, deliveries=self.delivery,
                                 on_outcome=self._on_outcome,
                                 subscriptions=Subscriptions(config.destinations))
        self.mapping_pool: MappingPool | None = None
        if config.engine.mapping_workers:
            from engine.mapping.pool import MappingPool

            self.mapping_pool = MappingPool(str(config.file), workers=config.engine.mapping_workers,
                                            router=self.router, metrics=self.metrics)
        self.channels = {c.name: ChannelRuntime(self, c) for c in config.channels}
        self.admin: Any = None
        self.started_at: float | None = None
        self._stopped = asyncio.Event()

    def ddl(self) -> list[str]:
        return [CORE_DDL, messages.DDL, *self.delivery.ddl()]

    async def start(self) -> None:
        """Open the store, recover, start delivery, then channels, then the admin API."""
        self.started_at = time.time()
        await self.store.open(self.ddl())
        seeded = await self.store.read(messages.counts_by_channel)
        for name, by_state in seeded.items():
            if name in self.channels:
                stats = self.channels[name].stats.counts
                stats["received"] = sum(n for s, n in by_state.items() if s != "rejected")
                for state in ("rejected", "filtered", "mapped", "failed"):
                    stats[state] = by_state.get(state, 0)
        if self.mapping_pool is not None:
            try:
                await self.mapping_pool.start()
                self.pipeline.mapper = self.mapping_pool
            except MappingUnavailable as exc:  # map on the loop instead: slower, never stuck
                log.error("mapping workers unavailable; mapping on the event loop", error=str(exc))
                self.mapping_pool = None
        self.pipeline.start()
        await self.delivery.start()
        for channel in self.channels.values():
            if channel.config.enabled:
                await channel.start()
        if self.config.engine.admin.enabled:
            from engine.admin.server import AdminServer

            self.admin = AdminServer(self)
            await self.admin.start()
        log.info("engine started", version=__version__, channels=len(self.channels),
                 admin=getattr(self.admin, "url", None))

    async def stop(self) -> None:
        """Stop accepting, let commits in flight finish, stop delivery, close the store.

        Each step is bounded: a connector that cannot close (a broker that went away, a peer that
        never reads) must not keep SIGTERM from finishing. Nothing committed is at risk: what was
        not processed or delivered stays in the store and resumes on the next start.
        """
        for channel in self.channels.values():
            if channel.inbound is not None:
                await self._bounded(f"channel {channel.name}", channel.halt(ChannelState.STOPPED))
        await self.pipeline.drain(timeout=5.0)
        await self.pipeline.stop()
        if self.mapping_pool is not None:
            await self._bounded("mapping workers", self.mapping_pool.stop())
        await self._bounded("delivery", self.delivery.stop())
        if self.admin is not None:
            await self._bounded("admin API", self.admin.stop())
        await self.store.close()
        self._stopped.set()
        log.info("engine stopped")

    @staticmethod
    async def _bounded(what: str, step: Awaitable[Any]) -> None:
        try:
            await asyncio.wait_for(step, STOP_STEP_TIMEOUT)
        except TimeoutError:
            log.error("gave up waiting for a component to stop", component=what,
                      seconds=STOP_STEP_TIMEOUT)

    async def control(self, channel: str, action: str) -> ChannelState:
        """`start|stop|pause|resume` a channel (admin API and console)."""
        rt = self.channels[channel]
        if action in ("start", "resume"):
            await rt.start()
        elif action == "stop":
            await rt.halt(ChannelState.STOPPED)
        elif action == "pause":
            await rt.halt(ChannelState.PAUSED)
        else:
            raise ValueError(f"unknown action {action!r}")
        return rt.state

    def _on_outcome(self, msg: StoredMessage, state: MessageState, results: list[RouteResult]) -> None:
        rt = self.channels.get(msg.channel)
        if rt is not None:
            rt.count(state.value)

    def status(self) -> dict[str, Any]:
        """What `GET /status` returns (the admin API adds nothing but serialisation)."""
        return {
            "engine": {"version": __version__, "started_at": self.started_at,
                       "uptime_seconds": time.time() - self.started_at if self.started_at else 0,
                       "config": {"file": str(self.config.file), "version": self.config.version,
                                  "loaded_at": self.config.loaded_at}},
            "store": self.store.describe(),
            "channels": [c.describe() for c in self.channels.values()],
            "destinations": self.delivery.status(),
            "quality": self.router.quality_snapshot(),
        }

    async def run_until_signalled(self) -> None:
        """`yonglink run`: start, then stop cleanly on SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        await self.start()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)
        from engine.reload import install_sighup

        install_sighup(self)  # SIGHUP: re-read config and routes, validated first
        await stop_requested.wait()
        log.info("signal received, stopping")
        await self.stop()

