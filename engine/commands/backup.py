"""`yonglink backup --config F --to FILE`: an online, consistent copy of the SQLite store.

Uses SQLite's online backup API (https://sqlite.org/backup.html) from a read-only connection, so the engine
keeps running and ACKing while the copy is made; the copy is a complete database (WAL content included)
that `yonglink run` can start on after a restore. Written to `FILE.partial`, fsynced, then renamed, so a
crash never leaves a half backup under the final name. The copy holds raw patient data: it is created
0600. A PostgreSQL store (`engine.store.backend: postgres`) is not copied: this command says so and exits
2; PostgreSQL's own tools do it (`pg_dump -Fc`, WAL archiving; docs/operations.md).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

PAGES_PER_STEP = 1024
"""Pages copied per step; between steps the engine's writer may commit (the backup restarts its pass
only for pages changed by another connection, which the API handles)."""


def register(sub: Any) -> None:
    p = sub.add_parser("backup", help="online backup of the SQLite store to a file (PostgreSQL: pg_dump)")
    p.add_argument("--config", "-c", default="config.example.yaml", help="config file (for the store path)")
    p.add_argument("--to", required=True, help="backup file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.errors import ConfigError
    from engine.store.connection import Dialect

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if config.engine.store.backend is Dialect.POSTGRES:
        print("yonglink backup copies SQLite stores only; this config's store is PostgreSQL"
              " (engine.store.backend: postgres): back it up with PostgreSQL's tools, e.g."
              " `pg_dump -Fc -f yonglink.dump \"$YONGLINK_PG_DSN\"`, and WAL archiving for point-in-time"
              " recovery (docs/operations.md, Backup and restore)", file=sys.stderr)
        return 2
    source_path = config.engine.store.path
    if not source_path.exists():
        print(f"no store at {source_path}", file=sys.stderr)
        return 1
    target = Path(args.to)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
    os.close(fd)
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    dest = sqlite3.connect(partial)
    try:
        source.backup(dest, pages=PAGES_PER_STEP)
        dest.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
    except sqlite3.Error as exc:
        print(f"backup of {source_path} failed: {exc}", file=sys.stderr)
        partial.unlink(missing_ok=True)
        return 1
    finally:
        dest.close()
        source.close()
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    print(f"backed up {source_path} to {target} ({target.stat().st_size} bytes)")
    return 0
