"""The running engine: store, pipeline, delivery, channels and admin API, wired from one `Config`.

`Engine` builds every part from the parts it needs and passes them in (no part receives the engine).
What a reload replaces - the config and the router built from it - is one `LiveState`, swapped by
`Engine.swap()` and nowhere else; the pipeline and the ingest batcher read it through the engine's
`_route` and `_may_route`, so they never hold a stale router.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from channels import inbound_types, outbound_types
from engine import __version__, reload
from engine.channel_runtime import CONTROL_ACTIONS, ChannelParts, ChannelRuntime, ChannelSet, os_reason
from engine.cluster import Cluster, LocalCluster
from engine.cluster.base import SelfReport
from engine.cluster.identity import node_id_of, store_config_of
from engine.config import ChannelConfig, Config
from engine.delivery.dead_letter_service import DeadLetterService
from engine.delivery.message_trail import MessageTrail
from engine.delivery.service import DeliveryService
from engine.delivery.subscriptions import Subscriptions
from engine.errors import ListenError, MappingUnavailable
from engine.metrics import Metrics
from engine.pipeline import Pipeline
from engine.quality.service import QualityReports
from engine.reload import ReloadResult
from engine.store import messages
from engine.store.access_audit import AccessAudit
from engine.store.backends import build_store
from engine.store.base import Store
from engine.store.connection import Dialect
from engine.store.ingest import IngestBatcher
from engine.types import ChannelState, MessageState, RouteResult, StoredMessage

if TYPE_CHECKING:
    from engine.admin.server import AdminServer
    from engine.datasets.registry import DatasetRegistry
    from engine.mapping import Router
    from engine.mapping.pool import MappingPool

__all__ = ["ChannelRuntime", "Engine", "LiveState"]

log = structlog.get_logger("yonglink")

STOP_STEP_TIMEOUT = 15.0
"""Seconds each component may take to stop before shutdown goes on without it."""


@dataclass(frozen=True, slots=True)
class LiveState:
    """What a reload replaces, as one: the config and the router built from it."""

    config: Config
    router: Router


class Engine:
    """Everything yonglink runs, started and stopped in dependency order."""

    def __init__(self, config: Config, *, store: Store | None = None, cluster: Cluster | None = None) -> None:
        from engine.mapping import load_router  # the mapping room; heavy imports kept off CLI start-up

        self.metrics = Metrics()
        self.cluster: Cluster = cluster or self._cluster(config)
        self.store: Store = store or build_store(store_config_of(config))
        self._live = LiveState(config=config, router=load_router(config, metrics=self.metrics))
        config_dir = config.file.resolve().parent
        self.ingest = IngestBatcher(self.store, dedupe_window=config.engine.store.dedupe_window,
                                    routable=self._may_route)
        self.delivery = DeliveryService(destinations=config.destinations, store=self.store,
                                        metrics=self.metrics, outbound_types=outbound_types(),
                                        config_dir=config_dir,
                                        retention_days=config.engine.store.retention_days,
                                        registry=self._datasets, facility=config.engine.facility,
                                        cluster=self.cluster)
        # Destinations cannot change live (reload.refusal), so their subscriptions are built once.
        self.subscriptions = Subscriptions(config.destinations)
        self.pipeline = Pipeline(store=self.store, route=self._route, deliveries=self.delivery,
                                 on_outcome=self._on_outcome, subscriptions=self.subscriptions,
                                 owner=self.cluster.owner)
        self.dead_letters = DeadLetterService(store=self.store, wake=self.delivery.wake,
                                              resubmit=self.pipeline.submit,
                                              refresh=self.delivery.refresh_soon)
        self.messages = MessageTrail(self.store)
        self.quality = QualityReports(store=self.store, router=lambda: self._live.router)
        self.audit = AccessAudit(self.store)
        self.mapping_pool: MappingPool | None = None
        if config.engine.mapping_workers:
            from engine.mapping.pool import MappingPool

            self.mapping_pool = MappingPool(str(config.file), workers=config.engine.mapping_workers,
                                            router=self.router, metrics=self.metrics)
        parts = ChannelParts(store=self.store, ingest=self.ingest, pipeline=self.pipeline,
                             metrics=self.metrics, inbound_types=inbound_types(), config_dir=config_dir)
        self.channels = ChannelSet(lambda c: self._channel(parts, c), config.channels)
        self.admin: AdminServer | None = None
        self.started_at: float | None = None
        self.last_reload: ReloadResult | None = None
        """The most recent reload attempt (applied or refused), for `GET /reload` and the console."""
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopped = asyncio.Event()

    # --- the live state: config and router --------------------------------------------------------

    @property
    def config(self) -> Config:
        """The config in force (replaced by a reload)."""
        return self._live.config

    @property
    def router(self) -> Router:
        """The router in force (replaced by a reload)."""
        return self._live.router

    @property
    def stopped(self) -> bool:
        """True once `stop()` has finished."""
        return self._stopped.is_set()

    @property
    def live(self) -> LiveState:
        return self._live

    def swap(self, live: LiveState) -> LiveState:
        """Put a new config and router in force, in one assignment; returns the previous state.

        The only place the running engine's config and routes change. Synchronous on purpose: no
        message can be mapped halfway through the switch.
        """
        old, self._live = self._live, live
        return old

    def _route(self, msg: StoredMessage) -> list[RouteResult]:
        """The pipeline's `RouteFn`: the router in force at the time of each message."""
        return self._live.router.route(msg)

    def _may_route(self, channel: str) -> bool:
        """The ingest batcher's `routable`: can any route in force select this channel's messages?"""
        return self._live.router.may_route(channel)

    def _datasets(self) -> DatasetRegistry:
        """The router's dataset registry (for `keys: de` destinations); loaded if the router has none."""
        found = self._live.router.datasets
        if found is None:
            from engine.datasets.registry import DatasetRegistry

            found = DatasetRegistry.load(self.config.engine.schemas_dir)
        return found

    @staticmethod
    def _cluster(config: Config) -> Cluster:
        """The cluster this node belongs to: the nodes sharing its PostgreSQL store, or on SQLite itself
        alone (engine/cluster/local.py)."""
        cl, st = config.engine.cluster, config.engine.store
        node_id = node_id_of(config)
        if st.backend is Dialect.POSTGRES and st.dsn:
            from engine.cluster.postgres import PostgresCluster  # psycopg only when it is used

            return PostgresCluster(node_id=node_id, dsn=st.dsn, heartbeat=cl.heartbeat, lease=cl.lease)
        return LocalCluster(node_id=node_id, heartbeat=cl.heartbeat, lease=cl.lease)

    def _self_report(self) -> SelfReport:
        """What this node tells the cluster at each heartbeat."""
        return SelfReport(config_version=self.config.version,
                          admin_url=self.admin.url if self.admin is not None else None,
                          channels=tuple(name for name, rt in self.channels.items()
                                         if rt.state is ChannelState.STARTED))

    async def _reload_from_peer(self, version: str) -> None:
        """Another node reloaded (`yonglink_reload`): re-read this node's own config file too."""
        if version == self.config.version:
            return
        log.info("reload announced by another node", version=version)
        await self.reload(announce=False)

    def _channel(self, parts: ChannelParts, config: ChannelConfig) -> ChannelRuntime:
        return ChannelRuntime(parts, config, facility=self.config.engine.facility)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, recover, start delivery, then channels, then the admin API."""
        self.started_at = time.time()
        await self.store.open()
        self.channels.seed_counts(await self.store.read(messages.counts_by_channel))
        self.cluster.on_reload(self._reload_from_peer)
        self.cluster.on_orphans(self.pipeline.rescan)
        await self.cluster.start(self._self_report)
        mapper = None
        if self.mapping_pool is not None:
            try:
                await self.mapping_pool.start()
                mapper = self.mapping_pool
            except MappingUnavailable as exc:  # map on the loop instead: slower, never stuck
                log.error("mapping workers unavailable; mapping on the event loop", error=str(exc))
                self.mapping_pool = None
        self.pipeline.start(mapper=mapper)
        await self.delivery.start()
        try:
            await self._listen()
        except ListenError:
            await self.stop()
            raise
        log.info("engine started", version=__version__, channels=len(self.channels),
                 admin=self.admin.url if self.admin is not None else None)

    async def _listen(self) -> None:
        """Start the channels, then the admin API; an address that cannot be bound stops the start-up
        with one line naming who and where (a second engine, or another server on the port)."""
        await self.channels.start_enabled()
        if self.config.engine.admin.enabled:
            from engine.admin.server import AdminServer

            admin = self.config.engine.admin
            self.admin = AdminServer(self, settings=admin, metrics=self.metrics)
            try:
                await self.admin.start()
            except OSError as exc:
                raise ListenError(f"admin API: cannot listen on {admin.host}:{admin.port}: "
                                  f"{os_reason(exc)}") from None

    async def stop(self) -> None:
        """Stop accepting, let commits in flight finish, stop delivery, close the store.

        Each step is bounded: a connector that cannot close (a broker that went away, a peer that
        never reads) must not keep SIGTERM from finishing. Nothing committed is at risk: what was
        not processed or delivered stays in the store and resumes on the next start.
        """
        await self.channels.stop_all(self._bounded)
        await self.pipeline.drain(timeout=5.0)
        await self.pipeline.stop()
        if self.mapping_pool is not None:
            await self._bounded("mapping workers", self.mapping_pool.stop())
        await self._bounded("delivery", self.delivery.stop())
        if self.admin is not None:
            await self._bounded("admin API", self.admin.stop())
        await self._bounded("cluster", self.cluster.stop())  # leases and singletons go to other nodes
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

    # --- what the admin API and the CLI call ------------------------------------------------------

    async def control(self, channel: str, action: str) -> ChannelState:
        """`start|stop|pause|resume` a channel (admin API and console)."""
        if action not in CONTROL_ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        return await self.channels[channel].control(action)

    async def readiness(self) -> list[str]:
        """Why the engine is not ready (`GET /readyz`): enabled channels not started, a store that is
        full or does not commit. Empty when ready."""
        reasons = [f"channel {c.name} is {c.state.value}" for c in self.channels.values()
                   if c.config.enabled and c.state is not ChannelState.STARTED]
        if self.store.full:  # a probe that fits in its page could still commit: say it plainly
            reasons.append("store is full (store.max_size reached or disk full): new messages are refused "
                           "and deliveries cannot be recorded until space is freed")
        elif not await self.store.check_writable():
            reasons.append("store is not writable")
        return reasons

    def _on_outcome(self, msg: StoredMessage, state: MessageState, results: list[RouteResult]) -> None:
        rt = self.channels.get(msg.channel)
        if rt is not None:
            rt.count(state.value)
        if state is MessageState.FILTERED and not results:  # no route matched (issue #12: never silent)
            self.router.observe_no_route(msg)

    def status(self) -> dict[str, Any]:
        """What `GET /status` returns (the admin API adds nothing but serialisation)."""
        return {
            "engine": {"version": __version__, "started_at": self.started_at,
                       "uptime_seconds": time.time() - self.started_at if self.started_at else 0,
                       "config": {"file": str(self.config.file), "version": self.config.version,
                                  "loaded_at": self.config.loaded_at}},
            "store": {**self.store.describe(), "max_size_bytes": self.config.engine.store.max_size},
            "channels": [c.describe() for c in self.channels.values()],
            "destinations": self.delivery.status(),
            "topology": self.topology(),
            "cluster": self.cluster.describe(),
            "quality": self.router.quality_snapshot(),
        }

    def topology(self) -> dict[str, list[dict[str, Any]]]:
        """Per channel, the routes that can select its messages and the destinations each route feeds
        (named in the route file, or subscribed by `destinations[].routes`): the console's overview."""
        router = self.router
        out: dict[str, list[dict[str, Any]]] = {}
        for name in self.channels:
            allowed = router.channel_routes.get(name)
            out[name] = [{"route": r.id, "dataset": r.target,
                          "destinations": list(dict.fromkeys((*r.destinations,
                                                              *self.subscriptions.subscribers(r.id))))}
                         for r in router.routes if (allowed is None or r.id in allowed)
                         and (r.channels is None or name in r.channels)]
        return out

    # --- reload -----------------------------------------------------------------------------------

    async def reload(self, *, announce: bool = True) -> ReloadResult:
        """Re-read the config file and its routes; apply them if valid, else change nothing.

        With `announce`, a reload that changed the version is announced to the other nodes of the
        cluster, which re-read their own config files (`_reload_from_peer`)."""
        async with self._reload_lock:
            result = await self._reload()
        self.last_reload = result
        if announce and result.ok and result.version and result.version != result.previous_version:
            self.cluster.notify_reload(result.version)
        if result.ok:
            log.info("config reloaded", version=result.version, previous=result.previous_version,
                     added=result.channels_added, removed=result.channels_removed,
                     restarted=result.channels_restarted, restart_required=result.restart_required)
        else:
            log.warning("config reload refused", errors=result.errors)
        return result

    async def _reload(self) -> ReloadResult:
        started = time.monotonic()
        old = self.config
        result = ReloadResult(ok=False, at=time.time(), previous_version=old.version)
        prepared = await reload.prepare(old, metrics=self.metrics)
        if isinstance(prepared, list):
            result.errors = prepared
            result.duration_seconds = time.monotonic() - started
            return result
        new, router = prepared.config, prepared.router
        router.continue_counts(self.router)  # data-quality counts are "since start", not "since reload"
        self.swap(LiveState(config=new, router=router))
        result.ok, result.version, result.loaded_at = True, new.version, new.loaded_at
        result.routes = len(router.routes)
        result.restart_required = reload.restart_required(old, new)
        if self.mapping_pool is not None:  # new workers load the new routes; the old ones map until then
            try:
                await self.mapping_pool.restart(router)
            except MappingUnavailable as exc:
                result.restart_required.append(
                    f"mapping workers (not restarted, old routes still map: {exc})")
        result.add_channels(await self.channels.apply(old, new))
        result.duration_seconds = time.monotonic() - started
        return result

    def install_sighup(self) -> None:
        """Reload on SIGHUP (call inside the running loop, as `run_until_signalled` does). No-op where
        the platform has no SIGHUP (Windows)."""
        if sys.platform == "win32":  # no SIGHUP there
            return
        loop = asyncio.get_running_loop()

        def on_sighup() -> None:
            log.info("SIGHUP received, reloading config", file=str(self.config.file))
            task = loop.create_task(self.reload(), name="yonglink-reload")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)

    async def run_until_signalled(self) -> None:
        """`yonglink run`: start, then stop cleanly on SIGTERM or SIGINT; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # before start: a SIGTERM right after it stops cleanly
            loop.add_signal_handler(sig, stop_requested.set)
        await self.start()
        self.install_sighup()  # SIGHUP: re-read config and routes, validated first
        await stop_requested.wait()
        log.info("signal received, stopping")
        await self.stop()
