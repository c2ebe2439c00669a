"""The message log: every accepted or rejected payload, its header fields, state and mapped results.

Functions here take a connection and run inside the store's writer (writes) or a reader thread
(queries), so the pipeline can combine them with other rooms' writes in one transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.ids import new_id
from engine.sqlfilter import Filters
from engine.types import Acceptance, InboundMessage, MessageState, RouteResult, StoredMessage

DDL = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    received_at REAL NOT NULL,
    peer TEXT,
    content_type TEXT NOT NULL,
    charset TEXT,
    sending_application TEXT,
    sending_facility TEXT,
    control_id TEXT,
    message_type TEXT,
    dedupe_key TEXT,
    state TEXT NOT NULL,
    error TEXT,
    processed_at REAL,
    metadata TEXT,
    raw BLOB
);
CREATE INDEX IF NOT EXISTS messages_dedupe ON messages(dedupe_key, received_at) WHERE dedupe_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_channel_time ON messages(channel, received_at);
CREATE INDEX IF NOT EXISTS messages_control_id ON messages(control_id);
CREATE INDEX IF NOT EXISTS messages_unprocessed ON messages(seq) WHERE state = 'received';
CREATE TABLE IF NOT EXISTS results (
    message_id TEXT NOT NULL,
    route_id TEXT NOT NULL,
    dataset TEXT,
    record TEXT,
    filtered TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (message_id, route_id)
);
"""
"""Tables of the message log (SQLite syntax; the portable subset apart from partial indexes)."""

_COLUMNS = ("id, channel, received_at, peer, content_type, charset, sending_application, "
            "sending_facility, control_id, message_type, state, error, processed_at, metadata")


def insert(conn: sqlite3.Connection, msg: InboundMessage, *, dedupe_window: float,
           state: MessageState = MessageState.RECEIVED, error: str | None = None) -> Acceptance:
    """Store one message, or report the earlier copy when its dedupe key was seen within the window."""
    if msg.dedupe_key is not None and state is not MessageState.REJECTED:
        row = conn.execute(
            "SELECT id FROM messages WHERE dedupe_key = ? AND received_at >= ? AND state != 'rejected' "
            "LIMIT 1", (msg.dedupe_key, msg.received_at - dedupe_window)).fetchone()
        if row is not None:
            return Acceptance(message_id=row[0], duplicate=True)
    message_id = new_id(msg.received_at)
    conn.execute(
        _INSERT,
        (message_id, msg.channel, msg.received_at, msg.peer, msg.content_type, msg.charset,
         msg.sending_application, msg.sending_facility, msg.control_id, msg.message_type,
         msg.dedupe_key, state.value, error,
         orjson.dumps(dict(msg.metadata)).decode() if msg.metadata else None, msg.raw))
    return Acceptance(message_id=message_id)


_INSERT = ("INSERT INTO messages (id, channel, received_at, peer, content_type, charset, sending_application,"
           " sending_facility, control_id, message_type, dedupe_key, state, error, metadata, raw)"
           " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_IN_CHUNK = 500
"""Dedupe keys looked up per query (SQLite's bound-variable limit is 999 on old builds)."""


def insert_many(conn: sqlite3.Connection, msgs: Sequence[InboundMessage], *,
                dedupe_window: float) -> list[Acceptance]:
    """`insert` for a burst of messages: one dedupe query per 500 keys and one executemany.

    Same answers as calling `insert` for each in order (a repeat inside the burst is a duplicate of
    the first). Far fewer round trips into SQLite, so the writer thread takes the GIL a few times
    per burst instead of several times per message.
    """
    latest: dict[str, tuple[str, float]] = {}
    keys = sorted({m.dedupe_key for m in msgs if m.dedupe_key is not None})
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start:start + _IN_CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute("SELECT dedupe_key, id, received_at FROM messages"
                            f" WHERE dedupe_key IN ({marks}) AND state != 'rejected'", chunk)
        for key, message_id, at in rows:
            if key not in latest or at > latest[key][1]:
                latest[key] = (message_id, at)
    out: list[Acceptance] = []
    values = []
    for m in msgs:
        key = m.dedupe_key
        seen = latest.get(key) if key is not None else None
        if seen is not None and seen[1] >= m.received_at - dedupe_window:
            out.append(Acceptance(message_id=seen[0], duplicate=True))
            continue
        message_id = new_id(m.received_at)
        values.append((message_id, m.channel, m.received_at, m.peer, m.content_type, m.charset,
                       m.sending_application, m.sending_facility, m.control_id, m.message_type, key,
                       MessageState.RECEIVED.value, None,
                       orjson.dumps(dict(m.metadata)).decode() if m.metadata else None, m.raw))
        if key is not None:
            latest[key] = (message_id, m.received_at)
        out.append(Acceptance(message_id=message_id))
    conn.executemany(_INSERT, values)
    return out


def record_outcome(conn: sqlite3.Connection, message_id: str, state: MessageState, error: str | None,
                   results: Sequence[RouteResult], *, now: float | None = None) -> bool:
    """Set the processed state and keep each route's result; False if it was already processed.

    The `state = 'received'` guard makes processing idempotent: a message seen both in the pipeline's
    memory queue and in a recovery scan is recorded (and its deliveries created) once.
    """
    now = time.time() if now is None else now
    cur = conn.execute("UPDATE messages SET state = ?, error = ?, processed_at = ?"
                       " WHERE id = ? AND state = 'received'", (state.value, error, now, message_id))
    if cur.rowcount == 0:
        return False
    conn.executemany(
        "INSERT OR REPLACE INTO results (message_id, route_id, dataset, record, filtered, error, created_at)"
        " VALUES (?,?,?,?,?,?,?)",
        [(message_id, r.route_id, r.dataset,
          orjson.dumps(r.record).decode() if r.record is not None else None, r.filtered, r.error, now)
         for r in results])
    return True


def reset_for_remap(conn: sqlite3.Connection, message_id: str) -> None:
    """Put a message back to `received` so the pipeline maps it again (DLQ replay with remap)."""
    conn.execute("UPDATE messages SET state = 'received', error = NULL, processed_at = NULL WHERE id = ?",
                 (message_id,))
    conn.execute("DELETE FROM results WHERE message_id = ?", (message_id,))


def _row_to_message(row: sqlite3.Row | tuple[Any, ...], raw: bytes | None = None) -> StoredMessage:
    meta = orjson.loads(row[13]) if row[13] else {}
    return StoredMessage(id=row[0], channel=row[1], received_at=row[2], peer=row[3], content_type=row[4],
                         charset=row[5], sending_application=row[6], sending_facility=row[7],
                         control_id=row[8], message_type=row[9], state=MessageState(row[10]),
                         error=row[11], processed_at=row[12], metadata=meta, raw=raw)


def get(conn: sqlite3.Connection, message_id: str, *, with_raw: bool = True) -> StoredMessage | None:
    """One message by id (raw bytes included when asked)."""
    row = conn.execute(f"SELECT {_COLUMNS}, raw FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return None
    return _row_to_message(row, row[14] if with_raw else None)


def unprocessed(conn: sqlite3.Connection, *, after_seq: int = 0, limit: int = 500,
                channels: Iterable[str] | None = None) -> list[tuple[int, StoredMessage]]:
    """Messages still `received` (accepted but not yet mapped), oldest first, for recovery."""
    rows = conn.execute(
        f"SELECT {_COLUMNS}, raw, seq FROM messages WHERE state = 'received' AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (after_seq, limit)).fetchall()
    allowed = set(channels) if channels is not None else None
    return [(row[15], _row_to_message(row, row[14])) for row in rows
            if allowed is None or row[1] in allowed]


def results_of(conn: sqlite3.Connection, message_id: str) -> list[dict[str, Any]]:
    """Each route's outcome for a message (record as JSON object)."""
    rows = conn.execute("SELECT route_id, dataset, record, filtered, error, created_at FROM results"
                        " WHERE message_id = ? ORDER BY route_id", (message_id,)).fetchall()
    return [{"route_id": r[0], "dataset": r[1], "record": orjson.loads(r[2]) if r[2] else None,
             "filtered": r[3], "error": r[4], "created_at": r[5]} for r in rows]


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Filters of `GET /messages`; every field optional; `before` pages backwards by id."""

    channel: str | None = None
    control_id: str | None = None
    state: str | None = None
    sending_facility: str | None = None
    message_type: str | None = None
    since: float | None = None
    until: float | None = None
    before: str | None = None
    limit: int = 50


def search(conn: sqlite3.Connection, q: MessageQuery) -> list[StoredMessage]:
    """Newest first, metadata only (no raw bytes)."""
    f = Filters().equal(channel=q.channel, control_id=q.control_id, state=q.state,
                        sending_facility=q.sending_facility, message_type=q.message_type)
    f.add("received_at >= ?", q.since).add("received_at < ?", q.until)
    sql, args = f.page(_COLUMNS, "messages", before=q.before, limit=q.limit, max_limit=1000)
    return [_row_to_message(row) for row in conn.execute(sql, args).fetchall()]


def counts_by_channel(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """Stored messages per channel and state, to seed the status counters at start-up."""
    out: dict[str, dict[str, int]] = {}
    for channel, state, n in conn.execute(
            "SELECT channel, state, count(*) FROM messages GROUP BY channel, state"):
        out.setdefault(channel, {})[state] = n
    return out


def prune(conn: sqlite3.Connection, *, older_than: float) -> int:
    """Drop raw bytes of processed messages older than the retention age; the metadata row stays."""
    cur = conn.execute("UPDATE messages SET raw = NULL WHERE received_at < ? AND raw IS NOT NULL"
                       " AND state IN ('mapped', 'filtered')", (older_than,))
    return cur.rowcount
