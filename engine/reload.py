"""Hot reload: re-read the config file and its routes, validate everything, then switch over live.

Order matters, so that a bad file changes nothing:

1. Parse and validate the config file and build the new router (routes, code tables, dataset schemas)
   off the event loop. Any `ConfigError` refuses the reload with its file:line; the engine is untouched.
2. Swap `engine.config`, `engine.router` and `engine.pipeline.route` in one step with no `await` in
   between. The pipeline maps a batch synchronously with whatever `route` it read, so every message is
   mapped entirely by the old routes or entirely by the new ones ("between messages").
3. Channels: stop the removed ones and those whose connector settings changed, then start the changed
   and the new ones. A channel whose type, settings and `enabled` flag are unchanged keeps running and
   keeps its connections; a change to its `routes:` list only is a routing change, not a restart.

Destinations are owned by the delivery service; while it cannot be reconfigured live, a reload that
changes a destination is refused (restart the engine for that). Engine-level settings that are bound at
start (store, admin listen address, logging) are reported in `restart_required` and take effect on
the next restart.
"""

from __future__ import annotations

import asyncio
import signal
import time
import weakref
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from engine.config import ChannelConfig, Config, load_config
from engine.errors import ConfigError, MappingUnavailable
from engine.types import ChannelState

if TYPE_CHECKING:
    from engine.runtime import Engine

log = structlog.get_logger("yonglink.reload")

RUNNING_STATES = (ChannelState.STARTED, ChannelState.STARTING, ChannelState.RECONNECTING,
                  ChannelState.ERROR)
"""States in which a channel is meant to run, so a settings change restarts it. A channel an operator
stopped or paused stays so."""

_locks: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()
_last: weakref.WeakKeyDictionary[Engine, ReloadResult] = weakref.WeakKeyDictionary()
_sighup_tasks: set[asyncio.Task[ReloadResult]] = set()


@dataclass(slots=True)
class ReloadResult:
    """What a reload did, or why it was refused (`ok` False: `errors` name file:line, nothing changed)."""

    ok: bool
    at: float
    previous_version: str
    version: str | None = None
    loaded_at: float | None = None
    errors: list[str] = field(default_factory=list)
    routes: int = 0
    channels_added: list[str] = field(default_factory=list)
    channels_removed: list[str] = field(default_factory=list)
    channels_restarted: list[str] = field(default_factory=list)
    channels_unchanged: list[str] = field(default_factory=list)
    channel_errors: dict[str, str] = field(default_factory=dict)
    restart_required: list[str] = field(default_factory=list)
    duration_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def connector_key(ch: ChannelConfig) -> tuple[str, bool, Any]:
    """What a channel's connector is built from: a difference here means a restart.

    `routes` (a routing concern) and `line` (moves when lines are added above) are left out.
    """
    return ch.type, ch.enabled, _freeze(ch.settings)


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def restart_required(old: Config, new: Config) -> list[str]:
    """Engine settings that are bound at start and so only change on the next restart."""
    out = []
    o, n = old.engine, new.engine
    if o.store != n.store:
        out.append("engine.store")
    if (o.admin.host, o.admin.port, o.admin.enabled) != (n.admin.host, n.admin.port, n.admin.enabled):
        out.append("engine.admin.listen")
    if o.admin.token != n.admin.token:
        out.append("engine.admin.token")
    if o.log != n.log:
        out.append("engine.log")
    if o.mapping_workers != n.mapping_workers:
        out.append("engine.mapping_workers")
    return out


def changed_destinations(old: Config, new: Config) -> list[str]:
    """Names of destinations added, removed or changed (compared without their line numbers)."""
    def key(d: Any) -> Any:
        return d.type, _freeze(dict(d.settings)), _freeze(dict(d.options))

    before = {d.name: key(d) for d in old.destinations}
    after = {d.name: key(d) for d in new.destinations}
    return sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))


def last_result(engine: Engine) -> ReloadResult | None:
    """The most recent reload attempt (applied or refused), for `GET /reload` and the console."""
    return _last.get(engine)


async def reload(engine: Engine) -> ReloadResult:
    """Re-read `engine.config.file` and its routes; apply them if valid, else change nothing."""
    lock = _locks.setdefault(engine, asyncio.Lock())
    async with lock:
        result = await _reload(engine)
    _last[engine] = result
    if result.ok:
        log.info("config reloaded", version=result.version, previous=result.previous_version,
                 added=result.channels_added, removed=result.channels_removed,
                 restarted=result.channels_restarted, restart_required=result.restart_required)
    else:
        log.warning("config reload refused", errors=result.errors)
    return result


async def _reload(engine: Engine) -> ReloadResult:
    started = time.monotonic()
    old = engine.config
    result = ReloadResult(ok=False, at=time.time(), previous_version=old.version)
    try:
        new, router = await asyncio.to_thread(_load, engine, old)
    except ConfigError as exc:
        errors = getattr(exc, "errors", None) or [exc]
        result.errors = [str(e) for e in errors]
        result.duration_seconds = time.monotonic() - started
        return result
    dests = changed_destinations(old, new)
    if dests and not hasattr(engine.delivery, "reconfigure"):
        result.errors = [f"destinations changed ({', '.join(dests)}): this needs an engine restart; "
                         f"nothing was reloaded ({new.file})"]
        result.duration_seconds = time.monotonic() - started
        return result

    # --- the switch: no await until routes, tables and config are all replaced ----------------------
    old_quality = getattr(engine.router, "quality", None)
    if old_quality is not None and hasattr(router, "quality"):
        router.quality = old_quality  # data-quality counts are "since start", not "since reload"
    engine.config = new
    engine.router = router
    engine.pipeline.route = router.route
    result.ok, result.version, result.loaded_at = True, new.version, new.loaded_at
    result.routes = len(getattr(router, "routes", ()))
    result.restart_required = restart_required(old, new)

    if engine.mapping_pool is not None:  # new workers load the new routes; the old ones map until then
        try:
            await engine.mapping_pool.restart(router)
        except MappingUnavailable as exc:
            result.restart_required.append(f"mapping workers (not restarted, old routes still map: {exc})")
    if dests:  # the delivery room's hook, once it exists
        await getattr(engine.delivery, "reconfigure")(new.destinations)  # noqa: B009
    await _apply_channels(engine, old, new, result)
    result.duration_seconds = time.monotonic() - started
    return result


def _load(engine: Engine, old: Config) -> tuple[Config, Any]:
    """Runs on a worker thread: parse the config and build its router (raises ConfigError)."""
    from engine.mapping import load_router

    new = load_config(old.file)
    return new, load_router(new, metrics=engine.metrics)


async def _apply_channels(engine: Engine, old: Config, new: Config, result: ReloadResult) -> None:
    from engine.runtime import ChannelRuntime

    before = {c.name: c for c in old.channels}
    after = {c.name: c for c in new.channels}
    restart: list[str] = []
    for name, cfg in after.items():
        rt = engine.channels.get(name)
        if rt is None:
            continue
        rt.facility = new.engine.facility
        prev = before.get(name, rt.config)
        rt.config = cfg
        if connector_key(prev) == connector_key(cfg):
            result.channels_unchanged.append(name)
        else:
            restart.append(name)

    for name in [n for n in engine.channels if n not in after]:  # removed: close the source
        rt = engine.channels[name]
        await _step(result, name, rt.halt(ChannelState.PAUSED))  # accepted messages are still mapped
        del engine.channels[name]
        result.channels_removed.append(name)

    to_start: list[str] = []
    for name in restart:
        rt = engine.channels[name]
        was_running = rt.state in RUNNING_STATES or rt.inbound is not None
        if rt.inbound is not None:
            await _step(result, name, rt.halt(ChannelState.STOPPED))
        if not rt.config.enabled:
            rt.engine.pipeline.hold(name, False)
            rt.set_state(ChannelState.STOPPED)
        elif was_running or not (before[name].enabled if name in before else True):
            to_start.append(name)
        result.channels_restarted.append(name)

    for name, cfg in after.items():
        if name not in engine.channels:
            engine.channels[name] = ChannelRuntime(engine, cfg)
            result.channels_added.append(name)
            if cfg.enabled:
                to_start.append(name)

    for name in to_start:
        rt = engine.channels[name]
        await _step(result, name, rt.start())
        if rt.state is ChannelState.ERROR and rt.stats.last_error:
            result.channel_errors[name] = rt.stats.last_error


async def _step(result: ReloadResult, name: str, step: Coroutine[Any, Any, None]) -> None:
    """Run one channel's stop or start; a failure is reported for that channel, the reload goes on."""
    try:
        await step
    except Exception as exc:  # a connector's bug must not leave the other channels half reloaded
        log.exception("channel reload step failed", channel=name)
        result.channel_errors[name] = f"{type(exc).__name__}: {exc}"


def install_sighup(engine: Engine) -> None:
    """Reload on SIGHUP (call from `run_until_signalled`, inside the running loop). No-op on Windows."""
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None:
        return
    loop = asyncio.get_running_loop()

    def on_sighup() -> None:
        log.info("SIGHUP received, reloading config", file=str(engine.config.file))
        task = loop.create_task(reload(engine), name="yonglink-reload")
        _sighup_tasks.add(task)
        task.add_done_callback(_sighup_tasks.discard)

    loop.add_signal_handler(sighup, on_sighup)
