"""Mapping in worker processes, so it runs on another core than ingest (`engine.mapping_workers: N`).

Mapping is pure CPU work (parse, route, map, validate) and, on the event loop, it shares one core and
one GIL with every connection's commits and ACKs: end to end, `Router.route` held the GIL about 60 %
of the time. With workers, the pipeline sends each batch of committed messages to a process that
maps it with its own Router, built from the same config file, and gets back every route's `Outcome`.
What stays in the engine process:

- data-quality counts: the worker maps with `observe=False` and the parent observes each outcome,
  exactly as `Router.route_outcomes` would have (so `/status` `quality` is unchanged);
- unmapped-code counts: the worker counts them per table and the parent adds them to `/metrics`;
- everything durable: outcomes and deliveries are still recorded by the pipeline in one transaction.

A worker that dies (a crash, an OOM kill) fails the batch in flight with `MappingUnavailable`; the
pipeline leaves those messages `received` and maps them again, and the pool is rebuilt on next use.
`restart()` (after a config reload) replaces the workers so they load the new routes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

import structlog

from engine.errors import MappingUnavailable

if TYPE_CHECKING:
    from engine.mapping.mapper import Outcome
    from engine.mapping.router import Router
    from engine.metrics import Metrics
    from engine.types import RouteResult, StoredMessage

log = structlog.get_logger("yonglink.mapping")

START_TIMEOUT = 60.0
"""Seconds a new worker may take to import the engine and load its routes."""
PARENT_CHECK_SECONDS = 1.0
"""How often a worker checks that the engine that started it is still alive (it exits if not)."""


class MappingPool:
    """`route_batch(msgs)` maps a batch in a worker process and returns each message's results."""

    def __init__(self, config_file: str, *, workers: int, router: Router, metrics: Metrics | None) -> None:
        self.config_file = config_file
        self.workers = workers
        self.router = router  # the parent's: data-quality counts are kept here
        self.metrics = metrics
        self._executor: ProcessPoolExecutor | None = None
        self.batches = 0
        self.restarts = 0

    async def start(self) -> None:
        """Start the workers and wait until each has loaded its routes."""
        self._executor = await self._spawn()
        log.info("mapping workers started", workers=self.workers)

    async def _spawn(self) -> ProcessPoolExecutor:
        # spawn, not fork: the engine process has threads (store writer, readers) whose locks a
        # forked child would inherit mid-use.
        executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init, initargs=(self.config_file, os.getpid()))
        loop = asyncio.get_running_loop()
        ready = [loop.run_in_executor(executor, _ready) for _ in range(self.workers)]
        try:
            await asyncio.wait_for(asyncio.gather(*ready), START_TIMEOUT)
        except (BrokenProcessPool, TimeoutError, OSError) as exc:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
            raise MappingUnavailable(f"mapping workers did not start: {exc!r}") from exc
        return executor

    async def stop(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def restart(self, router: Router) -> None:
        """New workers for new routes (config reload); `router` is the parent's new Router.

        The old workers keep mapping until the new ones have loaded, then finish their batch and exit.
        """
        fresh = await self._spawn()
        old, self._executor = self._executor, fresh
        self.router = router
        self.restarts += 1
        if old is not None:
            await asyncio.to_thread(old.shutdown, wait=True)

    async def route_batch(self, msgs: Sequence[StoredMessage]) -> list[list[RouteResult]]:
        """Each message's route results, mapped in a worker; raises MappingUnavailable if none can."""
        if self._executor is None:  # the last batch found a dead worker: start afresh
            self._executor = await self._spawn()
        executor = self._executor
        loop = asyncio.get_running_loop()
        size = -(-len(msgs) // self.workers)  # one slice per worker, so N workers map one batch together
        slices = [list(msgs[i:i + size]) for i in range(0, len(msgs), size)]
        try:
            mapped = await asyncio.gather(*(loop.run_in_executor(executor, _route_batch, part)
                                            for part in slices))
        except BrokenProcessPool as exc:
            log.error("a mapping worker died; its batch is mapped again", count=len(msgs))
            if self._executor is executor:
                self._executor = None
                executor.shutdown(wait=False, cancel_futures=True)
            raise MappingUnavailable("mapping worker died") from exc
        self.batches += 1
        if self.metrics is not None:
            for _, unmapped in mapped:
                for table, n in unmapped.items():
                    self.metrics.unmapped_codes.labels(table).inc(n)
        results = []
        for per_message in (one for outcomes, _ in mapped for one in outcomes):
            for out in per_message:
                self.router.observe(out)
            results.append([out.result for out in per_message])
        return results


# --- the worker process ------------------------------------------------------------------------------

_ROUTER: Router | None = None
_UNMAPPED: Counter[str] = Counter()


class _UnmappedCodes:
    """Stands in for the engine's Metrics in a worker: counts unmapped codes per table."""

    class _Child:
        def __init__(self, table: str) -> None:
            self.table = table

        def inc(self, n: int = 1) -> None:
            _UNMAPPED[self.table] += n

    class _Counter:
        def labels(self, table: str) -> _UnmappedCodes._Child:
            return _UnmappedCodes._Child(table)

    unmapped_codes = _Counter()


def _init(config_file: str, parent: int) -> None:
    global _ROUTER
    import threading

    from engine.config import load_config
    from engine.logs import configure_logging
    from engine.mapping import load_router

    # A worker must not outlive its engine: after `kill -9` nothing would ever stop it.
    threading.Thread(target=_exit_with, args=(parent,), name="yonglink-parent-watch", daemon=True).start()
    config = load_config(config_file)
    configure_logging(config.engine.log)
    _ROUTER = load_router(config, metrics=_UnmappedCodes())  # type: ignore[arg-type]


def _exit_with(parent: int) -> None:
    import time

    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _ready() -> bool:
    return _ROUTER is not None


def _route_batch(msgs: list[StoredMessage]) -> tuple[list[list[Outcome]], dict[str, int]]:
    router = _ROUTER
    if router is None:
        raise RuntimeError("mapping worker has no router")
    _UNMAPPED.clear()
    out: list[list[Outcome]] = []
    for msg in msgs:
        try:
            out.append(router.route_outcomes(msg, observe=False))
        except Exception as exc:  # as in the pipeline: a router bug fails this message, not the batch
            out.append([_internal_error(msg, exc)])
    return out, dict(_UNMAPPED)


def _internal_error(msg: StoredMessage, exc: Exception) -> Outcome:
    from engine.mapping.mapper import Outcome
    from engine.types import RouteResult

    log.error("router raised", message_id=msg.id, channel=msg.channel, error=type(exc).__name__)
    return Outcome(RouteResult(route_id="(router)", error=f"internal error: {type(exc).__name__}"),
                   msg.sending_facility or "", None, [])

