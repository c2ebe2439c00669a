"""The mapping room: YAML routes that turn HL7 v2 and FHIR messages into Ningbo dataset records.

`load_router(config)` loads the code tables, the dataset schemas and every route file named by the
config, compiled once; the returned `Router` maps each stored message (`Router.route`). Modules:
`route` (loader/compiler), `paths`, `expr` (conditions), `transforms`, `formats` (dates, GB 11643),
`model` (a compiled route), `mapper` (one route on one message), `identity` (resident ID),
`coding` (code-system transforms), `router`, `quality`, `structure` (hl7apy validation of messages),
`path_check` (HL7 v2 paths against hl7apy's structures, at load), `options` (transform option values),
`routetest` (route test runner).
The route language is documented in docs/mapping.md.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from engine.config import Config, ConfigErrors
from engine.datasets.registry import DatasetRegistry
from engine.errors import ConfigError
from engine.mapping.identity import Convention, parse_conventions
from engine.mapping.model import Route
from engine.mapping.route import load_routes
from engine.mapping.router import Router
from engine.metrics import Metrics
from engine.resources import DATASET_SCHEMAS_DIR, TABLES_DIR

DEFAULT_TABLES_DIR = TABLES_DIR
"""Code tables used when the config names none (`engine.mapping.code_tables`)."""
DEFAULT_SCHEMAS_DIR = DATASET_SCHEMAS_DIR
"""Dataset schemas used when no config is given (route tests, `yonglink map` without --config)."""

__all__ = ["DEFAULT_SCHEMAS_DIR", "DEFAULT_TABLES_DIR", "Route", "Router", "build_router", "expand_routes",
           "load_router"]


def build_router(route_files: Iterable[str | Path], *, schemas_dir: str | Path = DEFAULT_SCHEMAS_DIR,
                 tables_dir: str | Path = DEFAULT_TABLES_DIR, metrics: Metrics | None = None,
                 channel_routes: dict[str, frozenset[str] | None] | None = None,
                 channel_conventions: dict[str, tuple[Convention, ...]] | None = None,
                 channel_orgs: Mapping[str, str] | None = None, loaded: list[Route] | None = None) -> Router:
    """Load tables, schemas and routes into a Router (no config needed: route tests, the CLI).

    ``loaded`` receives every route read, also those that failed (see `load_route`)."""
    from engine.mapping.code_tables import load_tables

    tables = load_tables(tables_dir)
    datasets = _registry(Path(schemas_dir).resolve(), _stamp(Path(schemas_dir)))

    def on_unmapped(table: str) -> None:
        if metrics is not None:
            metrics.unmapped_codes.labels(table).inc()

    routes = load_routes(route_files, datasets=datasets, tables=tables, on_unmapped=on_unmapped,
                         loaded=loaded)
    return Router(routes, datasets=datasets, channel_routes=channel_routes, metrics=metrics,
                  channel_conventions=channel_conventions, channel_orgs=channel_orgs)


@lru_cache(maxsize=8)
def _registry(schemas_dir: Path, stamp: tuple[tuple[str, float], ...]) -> DatasetRegistry:
    """Dataset registries are costly to compile (seconds) and immutable: reuse one per directory
    while none of its files changed (tests and `yonglink test` build many routers)."""
    return DatasetRegistry.load(schemas_dir)


def _stamp(directory: Path) -> tuple[tuple[str, float], ...]:
    if not directory.is_dir():
        return ()
    return tuple((str(p), p.stat().st_mtime) for p in sorted(directory.rglob("*.json")))


def expand_routes(patterns: Iterable[Path], *, config: Config | None = None) -> list[Path]:
    """Config `routes:` entries are files or globs (``mappings/*.yaml``); a glob matching nothing is an
    error, so a typo cannot silently leave the engine without routes (named at its config line)."""
    out: list[Path] = []
    for i, pattern in enumerate(patterns):
        text = str(pattern)
        if any(ch in text for ch in "*?["):
            matches = sorted(Path(text).parent.glob(Path(text).name))
            if not matches:
                raise ConfigError(f"{text!r} matches no file (paths are relative to the config file's"
                                  f" folder)", key=f"routes[{i}]",
                                  file=str(config.file) if config else None,
                                  line=config.line_of("routes", i) if config else None)
            out += matches
        else:
            out.append(Path(text))
    return out


def load_router(config: Config, *, metrics: Metrics | None = None) -> Router:
    """Load every route file named by the config (`routes:`), checked against its tables and schemas.

    Raises ConfigError naming file:line for a bad route, an unknown destination, a channel whose
    `routes:` names a route that does not exist, a route whose `match.channels` names a channel the
    config does not define, or a destination whose `routes:` glob matches no route. Every problem is
    reported (`ConfigErrors`), not only the first.
    """
    tables_dir = config.engine.tables_dir or DEFAULT_TABLES_DIR
    channel_routes = {ch.name: (frozenset(ch.routes) if ch.routes is not None else None)
                      for ch in config.channels}
    channel_orgs = {ch.name: ch.source_org for ch in config.channels if ch.source_org}
    errors: list[ConfigError] = []
    channel_conventions = {}
    for i, ch in enumerate(config.channels):
        if ch.identity:
            try:
                channel_conventions[ch.name] = parse_conventions(ch.identity.get("conventions"), "any")
            except ConfigError as exc:
                errors.append(ConfigError(f"channel {ch.name!r} identity: {exc.bare_message}",
                                          file=str(config.file),
                                          line=config.line_of("channels", i, "identity") or ch.line,
                                          key=f"channels[{i}].identity"))
    loaded: list[Route] = []
    try:
        router = build_router(expand_routes(config.routes, config=config),
                              schemas_dir=config.engine.schemas_dir, tables_dir=tables_dir, metrics=metrics,
                              channel_routes=channel_routes, channel_conventions=channel_conventions,
                              channel_orgs=channel_orgs, loaded=loaded)
    except ConfigError as exc:
        errors += exc.errors if isinstance(exc, ConfigErrors) else [exc]
        raise ConfigErrors(errors + _config_problems(config, loaded)) from None
    errors += _config_problems(config, router.routes)
    if errors:
        raise ConfigErrors(errors)
    return router


def _config_problems(config: Config, routes: list[Route]) -> list[ConfigError]:
    """Cross-checks between the config and its routes (also routes that failed, as far as read)."""
    out: list[ConfigError] = []
    known_chans = {ch.name for ch in config.channels}
    known_dests = {d.name for d in config.destinations}
    for route in routes:
        for dest in route.destinations:
            if dest not in known_dests:
                defined = ", ".join(sorted(known_dests)) or "none"
                out.append(ConfigError(f"unknown destination {dest!r}{_did_you_mean(dest, known_dests)} "
                                       f"(config {config.file} defines: {defined})",
                                       file=route.file, line=route.destinations_line, key="destinations"))
        for chan in sorted(route.channels or ()):
            if chan not in known_chans:
                close = difflib.get_close_matches(chan, sorted(known_chans), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else \
                    f" (config {config.file} defines: {', '.join(sorted(known_chans)) or 'none'})"
                out.append(ConfigError(f"unknown channel {chan!r}{hint}", file=route.file,
                                       line=route.line_of("match.channels"), key="match.channels"))
    ids = {r.id for r in routes}
    for i, ch in enumerate(config.channels):
        for name in ch.routes or ():
            if name not in ids:
                out.append(ConfigError(f"channel {ch.name!r} names unknown route {name!r}"
                                       f"{_did_you_mean(name, ids)}", file=str(config.file),
                                       line=config.line_of("channels", i, "routes") or ch.line,
                                       key=f"channels[{i}].routes"))
    for i, sub in enumerate(config.destinations):
        for j, pattern in enumerate(sub.options.get("routes") or ()):
            # `*` (only stars) means every route there is, also none yet (an export destination in a
            # config still without routes): it cannot be a typo, so it is not checked.
            if str(pattern).strip("*") and not any(fnmatch.fnmatchcase(r, str(pattern)) for r in ids):
                out.append(ConfigError(f"destination {sub.name!r}: routes pattern {pattern!r} matches no "
                                       f"route (routes: {', '.join(sorted(ids)) or 'none'})",
                                       file=str(config.file),
                                       line=config.line_of("destinations", i, "routes", j) or sub.line,
                                       key=f"destinations[{i}].routes"))
    return out


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f", did you mean {close[0]}?" if close else ""
