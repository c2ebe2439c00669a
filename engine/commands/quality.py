"""`yonglink quality`: data-quality figures from the store, no running engine needed.

* `yonglink quality --month 2026-11 [--org X] [--format table|json|csv|html] [--lang zh|en] [-o FILE]`:
  the monthly bulletin (数据质量月度通报, engine/quality/): per sending organisation and dataset, messages,
  completeness, validity, timeliness, duplicates, worst fields, score, ranking and change against the
  previous month. The HTML is the printable bulletin, in Chinese unless `--lang en`.
* `yonglink quality [--since 7d] [--json]`: the rolling counts per organisation and dataset (records
  mapped/failed/filtered, fields missing/invalid), as `/status` shows them live (engine/mapping/quality.py).

Both read the store named by the config, read-only: the SQLite file, or the PostgreSQL database
(`engine.store.backend: postgres`) through the store's SQL adapter.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.commands import default_config

if TYPE_CHECKING:
    from engine.config import StoreConfig
    from engine.store.connection import Connection


def register(sub: Any) -> None:
    p = sub.add_parser("quality", help="data-quality counts per sending organisation (from the store)")
    p.add_argument("--config", "-c", default=default_config(),
                   help="config file, for the store path"
                        " (default: config.yaml here, else config.example.yaml)")
    p.add_argument("--since", help="only messages received in this period (e.g. 24h, 7d, 30d)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--month", help="the monthly bulletin for this month (YYYY-MM, Beijing time)")
    p.add_argument("--org", help="with --month: only this sending organisation (case-insensitive)")
    p.add_argument(
        "--format",
        choices=("table", "json", "csv", "html"),
        default=None,
        help="with --month: output format (default table)",
    )
    p.add_argument("--lang", choices=("zh", "en"), default="zh", help="language of the HTML bulletin")
    p.add_argument("--output", "-o", help="write to this file instead of standard output")
    p.set_defaults(func=run)


def monthly(args: argparse.Namespace) -> int:
    """The monthly bulletin for `--month`."""
    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.mapping import load_router
    from engine.quality import bulletin, dataset_fields, month_bounds, route_fields, table, to_csv, to_html

    try:
        month_bounds(args.month)
    except ValueError as exc:
        print(f"--month: {exc}", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        router = load_router(config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    conn, where = open_store(config.engine.store)
    if conn is None:
        return 1
    try:
        report = bulletin(
            conn,
            args.month,
            datasets=dataset_fields(router.datasets) if router.datasets else {},
            routes=route_fields(router.routes),
            org=args.org,
            generated_at=time.time(),
        )
    except read_errors() as exc:
        print(f"cannot read the store {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        close(conn)
    fmt = args.format or ("json" if args.json else "table")
    text = {
        "table": lambda: table(report),
        "csv": lambda: to_csv(report),
        "html": lambda: to_html(report, lang=args.lang),
        "json": lambda: json.dumps(report, ensure_ascii=False, indent=2),
    }[fmt]()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        print(text)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.month:
        return monthly(args)
    if args.org or args.format or args.output:
        print("--org, --format and --output go with --month", file=sys.stderr)
        return 2
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
    conn, where = open_store(config.engine.store)
    if conn is None:
        return 1
    try:
        counter = from_store(conn, fields, since=since,
                             channel_orgs={ch.name: ch.source_org for ch in config.channels if ch.source_org})
    except read_errors() as exc:
        print(f"cannot read the store {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        close(conn)
    snapshot = counter.snapshot()
    print(json.dumps(snapshot, ensure_ascii=False, indent=2) if args.json else table(snapshot))
    return 0


def open_store(store: StoreConfig) -> tuple[Connection | None, str]:
    """The store, read-only (no engine needed, none disturbed), and how to name it; None after saying
    why on stderr."""
    from engine.store.connection import Dialect

    if store.backend is Dialect.POSTGRES and store.dsn:
        import psycopg

        from engine.store.pg_connection import PgConnection

        info = psycopg.conninfo.conninfo_to_dict(store.dsn)
        where = f"PostgreSQL database {info.get('dbname') or '?'} on {info.get('host') or 'localhost'}"
        try:
            raw = psycopg.connect(store.dsn, autocommit=True, connect_timeout=5)
            raw.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            print(f"cannot reach the store, {where}: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return None, where
        return PgConnection(raw), where
    path: Path = store.path
    if not path.exists():
        print(f"no store at {path} (has the engine run?)", file=sys.stderr)
        return None, str(path)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True), str(path)


def read_errors() -> tuple[type[Exception], ...]:
    """What a failed read raises: sqlite3's errors, and psycopg's when it is installed."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def close(conn: Connection) -> None:
    """Close the SQLite connection or the PostgreSQL adapter's."""
    from engine.store.pg_connection import PgConnection

    if isinstance(conn, PgConnection):
        conn.raw.close()
    elif isinstance(conn, sqlite3.Connection):
        conn.close()
