"""`yonglink validate --config F [ROUTES...]`: check the config, its routes and every code table.

Routes are compiled exactly as the engine compiles them (paths, transforms, tables, target fields
against the dataset schema, destinations against the config); extra route files given on the command
line are checked too. Every problem found is printed as `key: what (file:line)`, one per line (not
only the first), and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.commands import default_config


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check config, routes and tables; exit 0 when valid")
    p.add_argument("--config", "-c", default=default_config(),
                   help="config file (YAML); default: config.yaml here, else config.example.yaml")
    p.add_argument("routes", nargs="*", help="extra route files to check (e.g. mappings/*.yaml)")
    p.set_defaults(func=validate)


def validate(args: argparse.Namespace) -> int:
    from engine.config import ConfigErrors, load_config
    from engine.errors import ConfigError
    from engine.mapping import DEFAULT_TABLES_DIR, build_router, load_router
    from engine.mapping.code_tables import load_tables

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    tables_dir = config.engine.tables_dir or DEFAULT_TABLES_DIR
    problems: list[ConfigError] = []
    routes: list[object] = []
    extra: list[object] = []
    tables: dict[str, object] = {}
    try:
        tables = dict(load_tables(tables_dir))
        routes = list(load_router(config).routes)
    except ConfigError as exc:
        problems += exc.errors if isinstance(exc, ConfigErrors) else [exc]
    if args.routes:
        try:
            extra = list(build_router(args.routes, schemas_dir=config.engine.schemas_dir,
                                      tables_dir=tables_dir).routes)
        except ConfigError as exc:
            problems += exc.errors if isinstance(exc, ConfigErrors) else [exc]
    if problems:
        unique = list(dict.fromkeys(str(p) for p in problems))
        for text in unique:
            print(text, file=sys.stderr)
        print(f"{len(unique)} problem{'s' if len(unique) > 1 else ''} found", file=sys.stderr)
        return 1
    print(f"{args.config}: valid ({len(config.channels)} channels, {len(config.destinations)} destinations,"
          f" {len(routes)} routes, {len(tables)} code tables)")
    if extra:
        print(f"{len(extra)} route file(s) given on the command line: valid")
    return 0
