"""Inbound channels at run time: each channel's `ChannelContext`, and the set of them a reload edits.

`ChannelRuntime` is the `ChannelContext` (channels/base.py) each inbound connector talks to: `accept`
commits before the connector acknowledges, duplicates are answered from the store, and every outcome
is counted for `/status` and `/metrics`. It receives the parts it uses (`ChannelParts`), never the
engine. `ChannelSet` holds the running channels by name and applies a reload's channel changes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from channels.base import ChannelContext, ChannelStats, Inbound
from engine.config import ChannelConfig, Config
from engine.errors import ListenError
from engine.metrics import Metrics
from engine.pipeline import Pipeline
from engine.store import messages
from engine.store.ingest import IngestBatcher, resolve
from engine.store.sqlite import Store
from engine.types import (
    Acceptance,
    ChannelState,
    InboundMessage,
    Landed,
    MessageState,
    ProcessingOutcome,
    StoredMessage,
)

log = structlog.get_logger("yonglink")

RUNNING_STATES = (ChannelState.STARTED, ChannelState.STARTING, ChannelState.RECONNECTING,
                  ChannelState.ERROR)
"""States in which a channel is meant to run, so a settings change restarts it. A channel an operator
stopped or paused stays so."""

CONTROL_ACTIONS = ("start", "stop", "pause", "resume")
"""What `POST /channels/{name}/{action}` and the console may do to a channel."""


@dataclass(frozen=True, slots=True)
class ChannelParts:
    """What every inbound channel's context uses, built once by the engine."""

    store: Store
    ingest: IngestBatcher
    pipeline: Pipeline
    metrics: Metrics
    inbound_types: Mapping[str, type[Inbound]]
    config_dir: Path


class ChannelRuntime(ChannelContext):
    """One inbound channel's context, state machine and counters."""

    def __init__(self, parts: ChannelParts, config: ChannelConfig, *, facility: str) -> None:
        self.parts = parts
        self.config = config
        self.name = config.name
        self.facility = facility
        self.config_dir = parts.config_dir
        self.stats = ChannelStats()
        self.state = ChannelState.STOPPED
        self.log = structlog.get_logger("yonglink.channel").bind(channel=config.name)
        self.inbound: Inbound | None = None
        self.start_error: Exception | None = None
        """Why the last `start` failed (None after a successful start)."""
        self._counters = {outcome: parts.metrics.messages.labels(config.name, outcome)
                          for outcome in ChannelStats.OUTCOMES}
        self._ack_latency = parts.metrics.ack_latency.labels(config.name)
        self._uncounted: dict[str, int] = {}  # outcomes of committed messages, counted at the turn's end

    def reconfigure(self, config: ChannelConfig, *, facility: str) -> None:
        """A reload's new config for this channel (the connector picks it up at its next start)."""
        self.config = config
        self.facility = facility

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
        self.parts.ingest.submit_soon(msg, functools.partial(self._landed, msg, landed))

    def _landed(self, msg: InboundMessage, landed: Landed, result: Acceptance | BaseException) -> None:
        if isinstance(result, Acceptance):
            uncounted = self._uncounted
            if not uncounted:  # the first of this turn: count them all once, after the batch's callbacks
                asyncio.get_running_loop().call_soon(self._count_landed)
            if result.duplicate:
                uncounted["duplicate"] = uncounted.get("duplicate", 0) + 1
            else:
                uncounted["received"] = uncounted.get("received", 0) + 1
                if result.reused:  # same MSH-4 + MSH-10 as an earlier message, other content
                    uncounted["control_id_reused"] = uncounted.get("control_id_reused", 0) + 1
                if result.processed:  # stored `filtered` already: no route can select this channel
                    uncounted["filtered"] = uncounted.get("filtered", 0) + 1
                else:
                    self.parts.pipeline.submit(StoredMessage(
                        id=result.message_id, channel=msg.channel, received_at=msg.received_at,
                        content_type=msg.content_type, state=MessageState.RECEIVED, raw=msg.raw,
                        peer=msg.peer, charset=msg.charset, sending_application=msg.sending_application,
                        sending_facility=msg.sending_facility, control_id=msg.control_id,
                        message_type=msg.message_type, metadata=msg.metadata))
        landed(result)

    def _count_landed(self) -> None:
        """Add the outcomes of the commits that landed in one loop turn: one `count` per outcome, not
        per message (a counter update takes a lock; a batch answers up to hundreds of messages)."""
        uncounted, self._uncounted = self._uncounted, {}
        for outcome, n in uncounted.items():
            self.count(outcome, n)

    async def reject(self, msg: InboundMessage, reason: str) -> str:
        commit = self.parts.store.write(lambda conn: messages.insert(
            conn, msg, dedupe_window=0, state=MessageState.REJECTED, error=reason,
            seal=self.parts.store.cipher.seal))
        acc = await asyncio.shield(commit)
        self.count("rejected")
        self.error(f"rejected input: {reason}")
        return acc.message_id

    async def wait_processed(self, message_id: str, timeout: float) -> ProcessingOutcome | None:  # noqa: ASYNC109
        return await self.parts.pipeline.wait(message_id, timeout)

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
            counter = self._counters[outcome] = self.parts.metrics.messages.labels(self.name, outcome)
        counter.inc(n)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start (or resume) the inbound connector; a failure leaves the channel in `error`."""
        if self.state in (ChannelState.STARTED, ChannelState.STARTING):
            return
        self.set_state(ChannelState.STARTING)
        self.parts.pipeline.hold(self.name, False)
        cls = self.parts.inbound_types[self.config.type]
        self.inbound = cls(name=self.name, settings=self.config.settings, context=self)
        self.start_error = None
        try:
            await self.inbound.start()
        except Exception as exc:
            self.start_error = exc
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
        self.parts.pipeline.hold(self.name, state is ChannelState.STOPPED)
        self.set_state(state)

    async def disable(self) -> None:
        """`enabled: false` after a reload: the source closes, messages already accepted are mapped."""
        if self.inbound is not None:
            await self.halt(ChannelState.STOPPED)
        self.parts.pipeline.hold(self.name, False)
        self.set_state(ChannelState.STOPPED)

    async def control(self, action: str) -> ChannelState:
        """`start|stop|pause|resume` (admin API and console)."""
        if action in ("start", "resume"):
            await self.start()
        elif action == "stop":
            await self.halt(ChannelState.STOPPED)
        elif action == "pause":
            await self.halt(ChannelState.PAUSED)
        else:
            raise ValueError(f"unknown action {action!r}")
        return self.state

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.config.type, "enabled": self.config.enabled,
            "state": self.state.value, **(self.inbound.describe() if self.inbound else {}),
            "counters": dict(self.stats.counts), "connections_open": self.stats.connections_open,
            "last_error": ({"at": self.stats.last_error_at, "text": self.stats.last_error}
                           if self.stats.last_error else None),
        }


def connector_key(ch: ChannelConfig) -> tuple[str, bool, Any]:
    """What a channel's connector is built from: a difference here means a restart.

    `routes` (a routing concern) and `line` (moves when lines are added above) are left out.
    """
    return ch.type, ch.enabled, freeze(ch.settings)


def freeze(value: Any) -> Any:
    """A hashable, order-independent copy of a config value (for comparing two configs)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


@dataclass(slots=True)
class ChannelChanges:
    """What a reload did to the channels (names), and each channel whose stop or start failed."""

    added: list[str]
    removed: list[str]
    restarted: list[str]
    unchanged: list[str]
    errors: dict[str, str]


class ChannelSet(Mapping[str, ChannelRuntime]):
    """The engine's inbound channels by name; `make` builds a channel's context from its config."""

    def __init__(self, make: Callable[[ChannelConfig], ChannelRuntime],
                 configs: Iterable[ChannelConfig]) -> None:
        self._make = make
        self._channels = {c.name: make(c) for c in configs}

    def __getitem__(self, name: str) -> ChannelRuntime:
        return self._channels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)

    def seed_counts(self, by_channel: Mapping[str, Mapping[str, int]]) -> None:
        """Counters at start, from the store (`messages.counts_by_channel`), so `/status` spans restarts."""
        for name, by_state in by_channel.items():
            if name in self._channels:
                stats = self._channels[name].stats.counts
                stats["received"] = sum(n for s, n in by_state.items() if s != MessageState.REJECTED)
                for state in (MessageState.REJECTED, MessageState.FILTERED, MessageState.MAPPED,
                              MessageState.FAILED):
                    stats[state.value] = by_state.get(state, 0)

    async def start_enabled(self) -> None:
        """Start every enabled channel; a server channel (MLLP, HTTP: it has `listen`) whose address cannot
        be bound raises ListenError naming who and where (another engine or server on the port). AMQP
        channels retry by themselves instead."""
        for channel in self._channels.values():
            if channel.config.enabled:
                await channel.start()
                listen = channel.config.settings.get("listen")
                if listen and isinstance(channel.start_error, OSError):
                    raise ListenError(f"channel {channel.name}: cannot listen on {listen}: "
                                      f"{os_reason(channel.start_error)}")

    async def stop_all(self, bounded: Callable[[str, Awaitable[Any]], Awaitable[None]]) -> None:
        """Close every source, each step bounded by `bounded(what, step)`."""
        for channel in self._channels.values():
            if channel.inbound is not None:
                await bounded(f"channel {channel.name}", channel.halt(ChannelState.STOPPED))

    async def apply(self, old: Config, new: Config) -> ChannelChanges:
        """A reload's channel changes: stop the removed ones and those whose connector settings changed,
        then start the changed and the new ones. A channel whose type, settings and `enabled` flag are
        unchanged keeps running and keeps its connections; a change to its `routes:` list only is a
        routing change, not a restart. One channel's failure is reported; the others go on."""
        done = ChannelChanges(added=[], removed=[], restarted=[], unchanged=[], errors={})
        before = {c.name: c for c in old.channels}
        after = {c.name: c for c in new.channels}
        restart: list[str] = []
        for name, cfg in after.items():
            rt = self._channels.get(name)
            if rt is None:
                continue
            prev = before.get(name, rt.config)
            rt.reconfigure(cfg, facility=new.engine.facility)
            if connector_key(prev) == connector_key(cfg):
                done.unchanged.append(name)
            else:
                restart.append(name)

        for name in [n for n in self._channels if n not in after]:  # removed: close the source
            await _step(done, name, self._channels[name].halt(ChannelState.PAUSED))  # accepted ones map
            del self._channels[name]
            done.removed.append(name)

        to_start: list[str] = []
        for name in restart:
            rt = self._channels[name]
            was_running = rt.state in RUNNING_STATES or rt.inbound is not None
            if not rt.config.enabled:
                await _step(done, name, rt.disable())
            else:
                if rt.inbound is not None:
                    await _step(done, name, rt.halt(ChannelState.STOPPED))
                if was_running or not (before[name].enabled if name in before else True):
                    to_start.append(name)
            done.restarted.append(name)

        for name, cfg in after.items():
            if name not in self._channels:
                self._channels[name] = self._make(cfg)
                done.added.append(name)
                if cfg.enabled:
                    to_start.append(name)

        for name in to_start:
            rt = self._channels[name]
            await _step(done, name, rt.start())
            if rt.state is ChannelState.ERROR and rt.stats.last_error:
                done.errors[name] = rt.stats.last_error
        return done


async def _step(done: ChannelChanges, name: str, step: Coroutine[Any, Any, None]) -> None:
    """Run one channel's stop or start; a failure is reported for that channel, the reload goes on."""
    try:
        await step
    except Exception as exc:  # a connector's bug must not leave the other channels half reloaded
        log.exception("channel reload step failed", channel=name)
        done.errors[name] = f"{type(exc).__name__}: {exc}"


def os_reason(exc: OSError) -> str:
    """`address already in use` rather than asyncio's `[Errno 98] error while attempting to bind ...`."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
