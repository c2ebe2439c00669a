"""Schema migrations: numbered files applied once, in order, at store open; older stores upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store import migrations
from engine.store.connection import Dialect
from engine.store.sqlite import SqliteStore

# The DDL a store of yonglink before numbered migrations created (CREATE TABLE IF NOT EXISTS per room),
# abridged to the tables whose shape 0001 must accept as they are: a message and a delivery stored then.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS engine_meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, channel TEXT NOT NULL, received_at REAL NOT NULL,
    peer TEXT, content_type TEXT NOT NULL, charset TEXT, sending_application TEXT, sending_facility TEXT,
    control_id TEXT, message_type TEXT, dedupe_key TEXT, state TEXT NOT NULL, error TEXT,
    processed_at REAL, metadata TEXT, raw BLOB);
CREATE INDEX IF NOT EXISTS messages_dedupe ON messages(dedupe_key);
INSERT INTO messages (id, channel, received_at, content_type, state, raw)
    VALUES ('m-old', 'his', 1700000000.0, 'x-application/hl7-v2+er7', 'received', x'4d5348');
"""


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_a_new_store_is_created_by_the_migrations_and_records_each_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    await store.close()
    await store.open()  # a second start applies nothing again
    await store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    assert {"messages", "deliveries", "dead_letters", "dlq_audit", "access_audit", "export_records",
            "traffic_history", "schema_migrations"} <= tables(conn)
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.name) for m in migrations.migrations(Dialect.SQLITE)]
    assert rows[0] == (1, "schema")


async def test_a_store_made_before_migrations_upgrades_and_keeps_its_messages(tmp_path: Path) -> None:
    """A store of the old per-room DDL (no schema_migrations, an index since dropped) opens: 0001 runs
    over it, the message it held is still there, the old index is gone and the export tables exist."""
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    conn.executescript(OLD_SCHEMA)
    conn.close()
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    held = await store.read(lambda c: c.execute("SELECT id FROM messages").fetchall())
    await store.close()
    assert [r[0] for r in held] == ["m-old"]
    conn = sqlite3.connect(tmp_path / "s.db")
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "messages_dedupe" not in indexes and "messages_lookup" in indexes
    assert "export_records" in tables(conn)
    assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == migrations.latest(
        Dialect.SQLITE)


async def test_a_store_newer_than_this_engine_is_refused_with_its_version(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    migrations.apply_sqlite(conn)
    conn.execute("INSERT INTO schema_migrations VALUES (9999, 'from_the_future', 0)")
    conn.close()
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(StoreError, match="schema version 9999, newer than this yonglink"):
        await store.open()


def test_every_migration_exists_for_both_backends_with_the_same_numbers_and_names() -> None:
    """The same history on SQLite and PostgreSQL: a migration written for one backend only would let
    the two schemas drift apart."""
    sqlite = [(m.version, m.name) for m in migrations.migrations(Dialect.SQLITE)]
    postgres = [(m.version, m.name) for m in migrations.migrations(Dialect.POSTGRES)]
    assert sqlite == postgres
    assert [v for v, _ in sqlite] == list(range(1, len(sqlite) + 1))


def test_a_script_is_split_into_whole_statements_comments_dropped() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT 'a;b');\n\n-- end\n" \
             "CREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END;\n"
    assert migrations.statements(script) == [
        "-- a comment; with a semicolon\nCREATE TABLE a (x TEXT DEFAULT 'a;b');",
        "-- end\nCREATE TRIGGER t AFTER INSERT ON a BEGIN SELECT 1; END;"]
