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

from engine.store.connection import Connection, Dialect, dialect_of
from engine.store.filters import Filters
from engine.store.inserts import NO_ROUTE, REUSED, InsertPlan, insert, insert_many, stored_key
from engine.types import MessageState, RouteResult, StoredMessage

# Tables: `messages`, `results` (engine/store/migrations/0001_schema.*.sql).
#
# One index, `messages_lookup (control_id, dedupe_key)`, serves both the duplicate check (`control_id IS
# ? AND dedupe_key = ?`: a sender's retry carries the same MSH-10 and key) and the ops search by control
# id. Control ids arrive in no particular order, so every index on them dirties a page per message per
# commit; measured with 32 senders (16,000 1.5 KB rows, groups of 32, synchronous=FULL), two such
# indexes committed 11,200 rows/s and this one 15,000-17,700. Inserts (dedupe, reused control ids) are
# in `engine.store.inserts`.

_COLUMNS = ("id, channel, received_at, peer, content_type, charset, sending_application, "
            "sending_facility, control_id, message_type, state, error, processed_at, metadata")


__all__ = ["NO_ROUTE", "REUSED", "InsertPlan", "MessageQuery", "insert", "insert_many", "stored_key"]
"""The write side (`insert`, `InsertPlan`...) lives in `engine.store.inserts`; re-exported here."""


_RESULT_REPLACES = (" ON CONFLICT (message_id, route_id) DO UPDATE SET dataset = excluded.dataset,"
                    " record = excluded.record, filtered = excluded.filtered, error = excluded.error,"
                    " created_at = excluded.created_at")
"""A route's result recorded again replaces the earlier one (SQLite and PostgreSQL alike)."""

def record_outcome(conn: Connection, message_id: str, state: MessageState, error: str | None,
                   results: Sequence[RouteResult], *, now: float | None = None) -> bool:
    """Set the processed state and keep each route's result; False if it was already processed.

    The `state = 'received'` guard makes processing idempotent: a message seen both in the pipeline's
    memory queue and in a recovery scan is recorded (and its deliveries created) once.
    """
    return message_id in record_outcomes(conn, [(message_id, state, error, results)], now=now)


def record_outcomes(conn: Connection,
                    outcomes: Sequence[tuple[str, MessageState, str | None, Sequence[RouteResult]]], *,
                    now: float | None = None) -> set[str]:
    """`record_outcome` for a batch: one UPDATE ... FROM (VALUES ...) RETURNING and one multi-row
    INSERT of results per 200 messages, instead of two statements per message. Returns the ids
    recorded (those still `received`; the rest were already processed and are left alone)."""
    now = time.time() if now is None else now
    recorded: set[str] = set()
    for start in range(0, len(outcomes), _OUTCOME_CHUNK):
        chunk = outcomes[start:start + _OUTCOME_CHUNK]
        values = ",".join(["(?,?,?)"] * len(chunk))
        params: list[Any] = [now]
        for message_id, state, error, _ in chunk:
            params += (message_id, state.value, error)
        done = {row[0] for row in conn.execute(
            "UPDATE messages SET state = v.column2, error = v.column3, processed_at = ?"
            f" FROM (VALUES {values}) AS v WHERE messages.id = v.column1 AND messages.state = 'received'"
            " RETURNING messages.id", params).fetchall()}
        rows = [(message_id, r.route_id, r.dataset,
                 orjson.dumps(r.record).decode() if r.record is not None else None, r.filtered, r.error, now)
                for message_id, _, _, results in chunk if message_id in done for r in results]
        for at in range(0, len(rows), _OUTCOME_CHUNK):
            part = rows[at:at + _OUTCOME_CHUNK]
            conn.execute("INSERT INTO results (message_id, route_id, dataset, record, filtered,"
                         " error, created_at) VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * len(part))
                         + _RESULT_REPLACES, [v for row in part for v in row])
        recorded |= done
    return recorded


_OUTCOME_CHUNK = 200
"""Messages (and result rows) per statement of `record_outcomes`: at most 1,400 bound parameters."""


def reset_for_remap(conn: Connection, message_id: str) -> None:
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


def get(conn: Connection, message_id: str, *, with_raw: bool = True) -> StoredMessage | None:
    """One message by id (raw bytes included when asked)."""
    row = conn.execute(f"SELECT {_COLUMNS}, raw FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return None
    return _row_to_message(row, row[14] if with_raw else None)


def unprocessed(conn: Connection, *, after_seq: int = 0, limit: int = 500,
                channels: Iterable[str] | None = None, owner: str | None = None,
                ) -> list[tuple[int, StoredMessage]]:
    """Messages still `received` (accepted but not yet mapped), oldest first, for recovery.

    With `owner` (a cluster node's id, engine/cluster/), only the messages that node took in or took
    over from a gone node; None (one node): all of them, with the SQL as before clusters."""
    mine, param = ("", ()) if owner is None else (" AND owner = ?", (owner,))
    rows = conn.execute(
        f"SELECT {_COLUMNS}, raw, seq FROM messages WHERE state = 'received' AND seq > ?{mine}"
        " ORDER BY seq LIMIT ?",
        (after_seq, *param, limit)).fetchall()
    allowed = set(channels) if channels is not None else None
    return [(row[15], _row_to_message(row, row[14])) for row in rows
            if allowed is None or row[1] in allowed]


def results_of(conn: Connection, message_id: str) -> list[dict[str, Any]]:
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


def search(conn: Connection, q: MessageQuery) -> list[StoredMessage]:
    """Newest first, metadata only (no raw bytes)."""
    f = Filters().equal(channel=q.channel, control_id=q.control_id, state=q.state,
                        sending_facility=q.sending_facility, message_type=q.message_type)
    f.add("received_at >= ?", q.since).add("received_at < ?", q.until)
    sql, args = f.page(_COLUMNS, "messages", before=q.before, limit=q.limit, max_limit=1000)
    return [_row_to_message(row) for row in conn.execute(sql, args).fetchall()]


def counts_by_channel(conn: Connection) -> dict[str, dict[str, int]]:
    """Stored messages per channel and state, to seed the status counters at start-up."""
    out: dict[str, dict[str, int]] = {}
    for channel, state, n in conn.execute(
            "SELECT channel, state, count(*) FROM messages GROUP BY channel, state"):
        out.setdefault(channel, {})[state] = n
    return out


def prune(conn: Connection, *, older_than: float) -> int:
    """Drop raw bytes of processed messages older than the retention age; the metadata row stays."""
    cur = conn.execute("UPDATE messages SET raw = NULL WHERE received_at < ? AND raw IS NOT NULL"
                       " AND state IN ('mapped', 'filtered')", (older_than,))
    if dialect_of(conn) is Dialect.POSTGRES:  # keys held past the retention age are long out of the window
        conn.execute("DELETE FROM dedupe_keys WHERE received_at < ?", (older_than,))
    return cur.rowcount
