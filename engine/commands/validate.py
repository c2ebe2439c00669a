"""`yonglink validate --config F`: check the config (and its routes and tables) without starting."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check config, routes and tables; exit 0 when valid")
    p.add_argument("--config", "-c", default="config.example.yaml", help="config file (YAML)")
    p.set_defaults(func=validate)


def validate(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.mapping import load_router

    try:
        config = load_config(args.config)
        router = load_router(config)
    except ConfigError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    routes = getattr(router, "routes", [])
    print(f"{args.config}: valid ({len(config.channels)} channels, {len(config.destinations)} destinations,"
          f" {len(routes)} routes)")
    return 0
