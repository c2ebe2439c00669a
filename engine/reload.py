"""Hot reload: re-read the config file and its routes, validate everything, then switch over live.

This module decides; `Engine.reload()` (engine/runtime.py) applies, in this order, so that a bad file
changes nothing:

1. `prepare()`: parse and validate the config file and build the new router (routes, code tables,
   dataset schemas) off the event loop. Any `ConfigError` refuses the reload with its file:line; the
   engine is untouched.
2. `Engine.swap()` replaces the engine's `LiveState` (config + router) in one assignment, with no
   `await` around it. The pipeline asks the engine's current router for every message, so every message
   is mapped entirely by the old routes or entirely by the new ones ("between messages").
3. Channels (`ChannelSet.apply`, engine/channel_runtime.py): stop the removed ones and those whose
   connector settings changed, then start the changed and the new ones.

Destinations are owned by the delivery service; while it cannot be reconfigured live, a reload that
changes a destination is refused (`refusal()`; restart the engine for that). Engine-level settings that
are bound at start (store, admin listen address, logging) are reported in `restart_required` and take
effect on the next restart.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from engine.channel_runtime import ChannelChanges, connector_key, freeze
from engine.config import Config, ConfigErrors, load_config
from engine.errors import ConfigError
from engine.metrics import Metrics

if TYPE_CHECKING:
    from engine.mapping import Router

__all__ = ["ReloadResult", "changed_destinations", "connector_key", "prepare", "refusal",
           "restart_required"]


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

    def add_channels(self, changes: ChannelChanges) -> None:
        """What `ChannelSet.apply` did, in this result's fields."""
        self.channels_added = changes.added
        self.channels_removed = changes.removed
        self.channels_restarted = changes.restarted
        self.channels_unchanged = changes.unchanged
        self.channel_errors = changes.errors


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
    if o.cluster != n.cluster:
        out.append("engine.cluster")
    return out


def changed_destinations(old: Config, new: Config) -> list[str]:
    """Names of destinations added, removed or changed (compared without their line numbers)."""
    def key(d: Any) -> Any:
        return d.type, freeze(dict(d.settings)), freeze(dict(d.options))

    before = {d.name: key(d) for d in old.destinations}
    after = {d.name: key(d) for d in new.destinations}
    return sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated new config with the router built from it, ready for `Engine.swap`."""

    config: Config
    router: Router


async def prepare(old: Config, *, metrics: Metrics) -> Prepared | list[str]:
    """Read `old.file` again and build its router off the loop: the new state, or the problems
    (file:line text each) that refuse the reload. Nothing running is touched either way."""
    try:
        new, router = await asyncio.to_thread(_load, old, metrics)
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    except ConfigError as exc:
        return [str(exc)]
    problem = refusal(old, new)
    if problem is not None:
        return [problem]
    return Prepared(config=new, router=router)


def refusal(old: Config, new: Config) -> str | None:
    """Why `new` cannot be applied live, or None. Destinations belong to the delivery service, which
    cannot swap them while it runs: a change to one needs a restart."""
    dests = changed_destinations(old, new)
    if not dests:
        return None
    return (f"destinations changed ({', '.join(dests)}): this needs an engine restart; "
            f"nothing was reloaded ({new.file})")


def _load(old: Config, metrics: Metrics) -> tuple[Config, Router]:
    """Runs on a worker thread: parse the config and build its router (raises ConfigError)."""
    from engine.mapping import load_router  # heavy (schemas, hl7apy): kept off CLI start-up

    new = load_config(old.file)
    return new, load_router(new, metrics=metrics)
