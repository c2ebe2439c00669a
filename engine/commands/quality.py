"""`yonglink quality [--since 7d] [--json] [--config F]`: data-quality report from the store.

Counts per sending organisation and dataset: records mapped, failed and filtered, and per field how
often it was missing from a mapped record or invalid — recomputed from the store's `results` table, so
it needs no running engine (see engine/mapping/quality.py for why nothing else is persisted).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("quality", help="data-quality counts per sending organisation (from the store)")
    p.add_argument("--config", "-c", default="config.example.yaml", help="config file (for the store path)")
    p.add_argument("--since", help="only messages received in this period (e.g. 24h, 7d, 30d)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config, parse_duration
    from engine.datasets.registry import DatasetRegistry
    from engine.errors import ConfigError
    from engine.mapping.quality import dataset_fields, from_store, table

    try:
        config = load_config(args.config)
        since = time.time() - parse_duration(args.since, key="--since") if args.since else None
        fields = dataset_fields(DatasetRegistry.load(config.engine.schemas_dir))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    path = config.engine.store.path
    if not path.exists():
        print(f"no store at {path} (has the engine run?)", file=sys.stderr)
        return 1
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        counter = from_store(conn, fields, since=since,
                             channel_orgs={ch.name: ch.source_org for ch in config.channels if ch.source_org})
    except sqlite3.Error as exc:
        print(f"cannot read the store {path}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    snapshot = counter.snapshot()
    print(json.dumps(snapshot, ensure_ascii=False, indent=2) if args.json else table(snapshot))
    return 0
