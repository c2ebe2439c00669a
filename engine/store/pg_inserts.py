"""Inbound messages into the message log on PostgreSQL: the duplicate check as a constraint across nodes.

SQLite has one writer, so `inserts._insert_unseen` can check "no stored copy in the window" and insert
in one statement. Several nodes on one PostgreSQL cannot: two nodes storing the same retry at once would
both see no copy. Here each keyed message first claims its (control id, dedupe key, content hash) in
`dedupe_keys` (migration 0001, PostgreSQL): `INSERT ... ON CONFLICT DO UPDATE ... WHERE the held key is
older than the window RETURNING`. A key held within the window returns nothing, so the message is not
inserted and is answered as a duplicate of the holder; the primary key serialises two nodes racing on the
same key (the second waits for the first's commit, then sees its row), so exactly one row is stored.

A reused control id (same key, other content, within the window: issue #16) is flagged in the metadata
from `dedupe_keys` too, the same as SQLite does from `messages`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from engine.store.connection import Connection

KEY_SEP = "\x1f"
"""As `inserts.KEY_SEP` (this module cannot import `inserts`, which imports it)."""
REUSED = "control_id_reused"
MAX_ROWS = 256
"""Rows per statement (= `inserts._CHUNKS[0]`). A burst of up to this many is one statement, as
`InsertPlan.one_statement` promises: run alone it is its own transaction, one commit (fixed chunk sizes
would commit once per chunk); psycopg prepares a text after it repeats (`prepare_threshold`), and bursts
repeat few sizes."""
_CASTS = ("text", "text", "float8", "text", "text", "text", "text", "text", "text", "text", "text", "text",
          "text", "float8", "text", "bytea", "text", "float8", "text")
"""Types of the VALUES columns (`InsertPlan.rows` order, then the content hash): parameters arrive
untyped, and a column of NULLs would otherwise be text."""
_COLUMNS = ("id, channel, received_at, peer, content_type, charset, sending_application, sending_facility,"
            " control_id, message_type, dedupe_key, state, error, processed_at, metadata, raw")


def run(conn: Connection, rows: Sequence[tuple[Any, ...]],
        dedupe_window: float) -> tuple[dict[int, str], set[str]]:
    """Insert `rows` (`InsertPlan.rows`); ({row: holder's id} for rows skipped as duplicates, ids of the
    rows flagged as reusing a control id)."""
    inserted: set[str] = set()
    flagged: set[str] = set()
    at = 0
    while at < len(rows):
        size = min(MAX_ROWS, len(rows) - at)
        params: list[Any] = []
        for row in rows[at:at + size]:
            params.extend(row)
            params.append(_hash(row))
        params.append(dedupe_window)
        for message_id, reused in conn.execute(_statement(size), params):
            inserted.add(message_id)
            if reused:
                flagged.add(message_id)
        at += size
    skipped: dict[int, str] = {}
    for n, row in enumerate(rows):
        if row[0] not in inserted:
            holder = conn.execute("SELECT message_id FROM dedupe_keys WHERE control_id = ? AND key = ?"
                                  " AND hash = ?", (row[8] or "", row[16], _hash(row))).fetchone()
            skipped[n] = holder[0] if holder else ""
    return skipped, flagged


def _hash(row: tuple[Any, ...]) -> str:
    """The content hash part of the stored dedupe key ('' when the message has none)."""
    stored, bare = row[10], row[16]
    if stored is None or bare is None or stored == bare:
        return ""
    return str(stored)[len(bare) + len(KEY_SEP):]


@functools.lru_cache(maxsize=MAX_ROWS)
def _statement(rows: int) -> str:
    one = "(" + ", ".join(f"?::{t}" for t in _CASTS) + ")"
    values = ", ".join([one] * rows)
    reused = (f"coalesce((SELECT jsonb_set(coalesce(v.metadata, '{{}}')::jsonb, '{{{REUSED}}}',"
              " to_jsonb(d.message_id))::text FROM dedupe_keys d"
              " WHERE d.control_id = coalesce(v.control_id, '') AND d.key = v.bare AND d.hash <> v.hash"
              " AND d.received_at >= v.since LIMIT 1), v.metadata)")
    return (
        f"WITH v ({_COLUMNS}, bare, since, hash) AS (VALUES {values}),"
        " claimed AS (INSERT INTO dedupe_keys (control_id, key, hash, message_id, received_at)"
        " SELECT coalesce(control_id, ''), bare, hash, id, received_at FROM v WHERE bare IS NOT NULL"
        " ON CONFLICT (control_id, key, hash) DO UPDATE SET message_id = excluded.message_id,"
        " received_at = excluded.received_at"
        " WHERE dedupe_keys.received_at < excluded.received_at - ?::float8"
        " RETURNING message_id)"
        f" INSERT INTO messages ({_COLUMNS})"
        " SELECT v.id, v.channel, v.received_at, v.peer, v.content_type, v.charset, v.sending_application,"
        " v.sending_facility, v.control_id, v.message_type, v.dedupe_key, v.state, v.error, v.processed_at,"
        f" CASE WHEN v.bare IS NULL OR v.hash = '' THEN v.metadata ELSE {reused} END, v.raw"
        " FROM v WHERE v.bare IS NULL OR v.id IN (SELECT message_id FROM claimed)"
        f" RETURNING id, strpos(coalesce(metadata, ''), '\"{REUSED}\"') > 0")
