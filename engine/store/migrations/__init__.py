"""Numbered schema migrations, the same history on SQLite and PostgreSQL (issue #13).

Each migration is a file in this package: `NNNN_name.sql` when its SQL is the same on both backends, or
`NNNN_name.sqlite.sql` + `NNNN_name.postgres.sql` when it differs (types, `WITHOUT ROWID`, identity
columns...). A store applies at open every migration it has not recorded in `schema_migrations`, in
order, each in its own transaction with its row in `schema_migrations` (so a crash half-way leaves
either all of it or none). On PostgreSQL the whole run holds an advisory lock, so several nodes starting
at once apply each migration exactly once; SQLite has one engine per store (`StoreLock`) and its
`BEGIN IMMEDIATE` serialises a tool opening the store beside it.

0001 is the schema every room created with `CREATE TABLE IF NOT EXISTS` before migrations existed: it is
idempotent, so a store made by an older yonglink upgrades by running it. A new table or column is a new
file with the next number, never an edit of an applied one.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from engine.errors import MigrationError
from engine.store.connection import Dialect

if TYPE_CHECKING:
    import psycopg

    PgConnection = psycopg.Connection[Any]

ADVISORY_LOCK = 0x796F6E676C696E6B  # "yonglink" in ASCII: the key of pg_advisory_lock around migrations
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgres))?\.sql$")
_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
          " applied_at {real} NOT NULL)")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of the schema, as the SQL of one backend."""

    version: int
    name: str
    sql: str


def migrations(dialect: Dialect) -> list[Migration]:
    """Every migration of `dialect`, in order (a shared `.sql` file or the dialect's own one)."""
    found: dict[int, tuple[str, str, bool]] = {}  # version -> (name, sql, own file of the dialect)
    for entry in resources.files(__package__).iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        version, name, only = int(match[1]), match[2], match[3]
        if only is not None and only != dialect.value:
            continue
        if version in found and found[version][0] != name:
            raise MigrationError(f"two migrations numbered {version:04d}: {found[version][0]}, {name}")
        if version not in found or only is not None:
            found[version] = (name, entry.read_text(encoding="utf-8"), only is not None)
    return [Migration(v, name, sql) for v, (name, sql, _) in sorted(found.items())]


def latest(dialect: Dialect) -> int:
    """The version a store of this yonglink is at after `apply`."""
    steps = migrations(dialect)
    return steps[-1].version if steps else 0


def statements(script: str) -> list[str]:
    """A SQLite script split into complete statements (`sqlite3.complete_statement` knows the quoting and
    `BEGIN ... END` of triggers), so each runs with `execute` inside one transaction: `executescript`
    would commit first."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip() and not _only_comments(pending):
                out.append(pending.strip())
            pending = ""
    if pending.strip() and not _only_comments(pending):
        raise MigrationError(f"incomplete SQL statement at the end of a migration: {pending.strip()[:80]!r}")
    return out


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") or line.strip() == ";"
               for line in sql.splitlines())


def apply_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply the pending migrations to a SQLite connection in autocommit mode (`isolation_level=None`);
    returns the versions applied."""
    conn.execute(_TABLE.format(real="REAL"))
    applied: list[int] = []
    for step in migrations(Dialect.SQLITE):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (step.version,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            for statement in statements(step.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (step.version, step.name, time.time()))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(f"migration {step.version:04d}_{step.name} failed: {exc}") from exc
        applied.append(step.version)
    _check_not_newer(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0], Dialect.SQLITE)
    return applied


def _check_not_newer(version: int | None, dialect: Dialect) -> None:
    known = latest(dialect)
    if version is not None and version > known:
        raise MigrationError(f"the store is at schema version {version}, newer than this yonglink knows"
                             f" ({known}); run the newer yonglink, or restore a backup taken before it"
                             " upgraded the store")


def apply_postgres(conn: PgConnection) -> list[int]:
    """Apply the pending migrations on PostgreSQL under an advisory lock (several nodes may start at
    once: each migration runs exactly once); `conn` is in autocommit mode. Returns the versions applied."""
    import psycopg

    applied: list[int] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK,))
    try:
        conn.execute(_TABLE.format(real="double precision"))
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for step in migrations(Dialect.POSTGRES):
            if step.version in done:
                continue
            try:
                with conn.transaction():
                    conn.execute(step.sql.encode())  # bytes: no parameters, so `%` is literal
                    conn.execute("INSERT INTO schema_migrations (version, name, applied_at)"
                                 " VALUES (%s, %s, %s)", (step.version, step.name, time.time()))
            except psycopg.Error as exc:
                raise MigrationError(f"migration {step.version:04d}_{step.name} failed: {exc}") from exc
            applied.append(step.version)
        newest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        _check_not_newer(newest[0] if newest else None, Dialect.POSTGRES)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK,))
    return applied
