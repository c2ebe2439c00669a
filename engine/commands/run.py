"""`yonglink run --config F`: start the engine and run until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from engine.commands import default_config


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the engine")
    p.add_argument("--config", "-c", default=default_config(),
                   help="config file (YAML); default: config.yaml here, else config.example.yaml")
    p.set_defaults(func=run)


GIL_SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the GIL while another waits (CPython's default is 0.005)."""


def tune_interpreter() -> None:
    """Process settings for serving: called by `yonglink run` (and the benchmarks, to measure the same).

    The store's writer thread and the event loop share the GIL; with the default 5 ms switch interval a
    loop waiting for it stalls every ACK behind it. Measured (bench/mllp_ingest.py, 32 connections,
    loaded machine): 0.2 ms took 1,448 -> 2,501 msg/s and p99 158 -> 23 ms.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.errors import ConfigError, ListenError, NodeIdInUse, StoreError
    from engine.logs import configure_logging

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"yonglink: invalid config:\n{exc}", file=sys.stderr)
        return 1
    configure_logging(config.engine.log)
    tune_interpreter()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvloop is optional (not on Windows)
        runner = asyncio.run
    from engine.cluster.identity import store_config_of
    from engine.store.backends import build_store

    store = build_store(store_config_of(config))  # on PostgreSQL its connections name this node
    try:
        store.claim()  # first: a second engine on this store exits before loading routes and schemas
        from engine.runtime import Engine

        runner(Engine(config, store=store).run_until_signalled())
    except (StoreError, ConfigError, ListenError, NodeIdInUse) as exc:  # one line: store in use, port taken
        print(f"yonglink: {exc}", file=sys.stderr)
        return 1
    return 0
