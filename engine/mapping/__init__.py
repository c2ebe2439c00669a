"""The mapping room: YAML routes that turn HL7 v2 and FHIR messages into Ningbo dataset records.

`load_router(config)` loads the code tables, the dataset schemas and every route file named by the
config, compiled once; the returned `Router` maps each stored message (`Router.route`). Modules:
`route` (loader/compiler), `paths`, `expr` (conditions), `transforms`, `formats` (dates, GB 11643),
`model` (a compiled route), `mapper` (one route on one message), `identity` (resident ID),
`coding` (code-system transforms), `router`, `quality`, `structure`
(hl7apy validation), `routetest` (route test runner).
The route language is documented in docs/mapping.md.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from engine.config import Config
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
                 channel_conventions: dict[str, tuple[Convention, ...]] | None = None) -> Router:
    """Load tables, schemas and routes into a Router (no config needed: route tests, the CLI)."""
    from engine.mapping.code_tables import load_tables

    tables = load_tables(tables_dir)
    datasets = _registry(Path(schemas_dir).resolve(), _stamp(Path(schemas_dir)))

    def on_unmapped(table: str) -> None:
        if metrics is not None:
            metrics.unmapped_codes.labels(table).inc()

    routes = load_routes(route_files, datasets=datasets, tables=tables, on_unmapped=on_unmapped)
    return Router(routes, datasets=datasets, channel_routes=channel_routes, metrics=metrics,
                  channel_conventions=channel_conventions)


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

    Raises ConfigError naming file:line for a bad route, an unknown destination, or a channel whose
    `routes:` names a route that does not exist.
    """
    tables_dir = config.engine.tables_dir or DEFAULT_TABLES_DIR
    channel_routes = {ch.name: (frozenset(ch.routes) if ch.routes is not None else None)
                      for ch in config.channels}
    channel_conventions = {}
    for i, ch in enumerate(config.channels):
        if ch.identity:
            try:
                channel_conventions[ch.name] = parse_conventions(ch.identity.get("conventions"), "any")
            except ConfigError as exc:
                raise ConfigError(f"channel {ch.name!r} identity: {exc.bare_message}", file=str(config.file),
                                  line=config.line_of("channels", i, "identity") or ch.line,
                                  key=f"channels[{i}].identity") from None
    router = build_router(expand_routes(config.routes, config=config), schemas_dir=config.engine.schemas_dir,
                          tables_dir=tables_dir, metrics=metrics, channel_routes=channel_routes,
                          channel_conventions=channel_conventions)
    known_dests = {d.name for d in config.destinations}
    for route in router.routes:
        for dest in route.destinations:
            if dest not in known_dests:
                raise ConfigError(f"unknown destination {dest!r}{_did_you_mean(dest, known_dests)} (config"
                                  f" {config.file} defines: {', '.join(sorted(known_dests)) or 'none'})",
                                  file=route.file,
                                  line=route.destinations_line, key="destinations")
    ids = {r.id for r in router.routes}
    for i, ch in enumerate(config.channels):
        for name in ch.routes or ():
            if name not in ids:
                raise ConfigError(f"channel {ch.name!r} names unknown route {name!r}"
                                  f"{_did_you_mean(name, ids)}", file=str(config.file),
                                  line=config.line_of("channels", i, "routes") or ch.line,
                                  key=f"channels[{i}].routes")
    return router


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f", did you mean {close[0]}?" if close else ""
