"""The message log: every accepted or rejected payload, its header fields, state and mapped results.

Functions here take a connection and run inside the store's writer (writes) or a reader thread
(queries), so the pipeline can combine them with other rooms' writes in one transaction.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.ids import new_id
from engine.store.filters import Filters
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
DROP INDEX IF EXISTS messages_dedupe;
DROP INDEX IF EXISTS messages_control_id;
CREATE INDEX IF NOT EXISTS messages_lookup ON messages(control_id, dedupe_key);
CREATE INDEX IF NOT EXISTS messages_channel_time ON messages(channel, received_at);
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
"""Tables of the message log (SQLite syntax; the portable subset apart from partial indexes).

One index, `messages_lookup (control_id, dedupe_key)`, serves both the duplicate check (`control_id IS
? AND dedupe_key = ?`: a sender's retry carries the same MSH-10 and key) and the ops search by control
id. Control ids arrive in no particular order, so every index on them dirties a page per message per
commit; measured with 32 senders (16,000 1.5 KB rows, groups of 32, synchronous=FULL), two such
indexes committed 11,200 rows/s and this one 15,000-17,700. Earlier databases lose their two
indexes and gain this one at the first start (a one-time rebuild).

A message with a content hash (`InboundMessage.content_hash`) is stored with the dedupe key
``<key>\x1f<hash>`` (`stored_key`): the same index then finds a retry (same key, same content: a
duplicate) and, by the range ``<key>\x1f`` .. ``<key>\x20``, an earlier message whose key was reused for
other content (stored as a new message, flagged `control_id_reused` in its metadata). Rows stored
before content hashes existed keep the bare key and still count as duplicates of a retry.
"""

KEY_SEP = "\x1f"
"""Between a dedupe key and the content hash in the stored `dedupe_key` (a control character: never part
of an HL7 or HTTP key)."""
REUSED = "control_id_reused"
"""Metadata key (value: the earlier message's id) of a message whose dedupe key an earlier message in the
window had with other content."""


def stored_key(msg: InboundMessage) -> str | None:
    """The `dedupe_key` column of ``msg``: its key, with its content hash when it has one."""
    if msg.dedupe_key is None or msg.content_hash is None:
        return msg.dedupe_key
    return f"{msg.dedupe_key}{KEY_SEP}{msg.content_hash}"

_COLUMNS = ("id, channel, received_at, peer, content_type, charset, sending_application, "
            "sending_facility, control_id, message_type, state, error, processed_at, metadata")


def insert(conn: sqlite3.Connection, msg: InboundMessage, *, dedupe_window: float,
           state: MessageState = MessageState.RECEIVED, error: str | None = None) -> Acceptance:
    """Store one message, or report the earlier copy when it is a duplicate within the window (see
    `DDL`); a `rejected` message is always stored, never deduplicated."""
    if state is MessageState.RECEIVED:
        plan = InsertPlan([msg], dedupe_window=dedupe_window)
        return plan.acceptances(plan.run(conn))[0]
    message_id = new_id(msg.received_at)
    conn.execute(
        _INSERT,
        (message_id, msg.channel, msg.received_at, msg.peer, msg.content_type, msg.charset,
         msg.sending_application, msg.sending_facility, msg.control_id, msg.message_type,
         stored_key(msg), state.value, error, None,
         orjson.dumps(dict(msg.metadata)).decode() if msg.metadata else None, msg.raw))
    return Acceptance(message_id=message_id)


_INSERT = ("INSERT INTO messages (id, channel, received_at, peer, content_type, charset, sending_application,"
           " sending_facility, control_id, message_type, dedupe_key, state, error, processed_at, metadata,"
           " raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_IN_CHUNK = 500
"""Control ids looked up per query (SQLite's bound-variable limit is 999 on old builds)."""


def insert_many(conn: sqlite3.Connection, msgs: Sequence[InboundMessage], *, dedupe_window: float,
                unroutable: Sequence[bool] | None = None) -> list[Acceptance]:
    """`insert` for a burst of messages (same answers as inserting each in order); see `InsertPlan`."""
    plan = InsertPlan(msgs, dedupe_window=dedupe_window, unroutable=unroutable)
    return plan.acceptances(plan.run(conn))


NO_ROUTE = "no route matched"
"""The error text of a message no route selected (`engine.pipeline.decide` gives the same)."""
_FILTERED, _RECEIVED = MessageState.FILTERED.value, MessageState.RECEIVED.value
_CHUNKS = (256, 64, 16, 4, 1)
"""Rows per INSERT statement: a few fixed sizes, so SQLite's statement cache holds them all."""


class InsertPlan:
    """A burst of inbound messages as rows for one multi-row INSERT, built before the writer runs it.

    The rows (and their ids) are made by the caller, on the event loop; the writer thread only runs
    `run`: one `INSERT ... SELECT FROM (VALUES ...) WHERE NOT EXISTS (earlier copy)` statement per 256
    rows. One statement means one `sqlite3_step`, during which the writer does not hold the GIL: with
    `executemany` it took the GIL back after every row, and waited for the event loop each time
    (measured: a 16-row commit took 3.3 ms in the engine against 1.3 ms alone).

    A message whose (control id, dedupe key, content hash) repeats an earlier one of the same burst is
    that one's duplicate without a row; one that repeats a stored message within the window is skipped
    by the statement and found again by `run` (rare: a sender's retry). A reused control id (same key,
    other content) is a new row flagged `control_id_reused`: here when the earlier message is in the
    same burst, else by the statement, and `run` reads back which rows it flagged.
    `unroutable[i]` marks a message of a channel no route can select: it is stored already
    `filtered` ("no route matched", what the pipeline would decide), so it costs no second write.
    """

    __slots__ = ("dedupe_window", "msgs", "reused", "row_of", "rows", "same_as")

    def __init__(self, msgs: Sequence[InboundMessage], *, dedupe_window: float,
                 unroutable: Sequence[bool] | None = None) -> None:
        self.msgs = msgs
        self.dedupe_window = dedupe_window
        self.rows: list[tuple[Any, ...]] = []
        self.row_of: list[int] = []  # per message: its row, or -1 - (index of the earlier message)
        self.same_as: dict[tuple[str | None, str], list[int]] = {}  # (control id, key) -> messages
        self.reused: set[int] = set()  # rows flagged here (an earlier message of the burst)
        now = time.time()
        for i, m in enumerate(msgs):
            key = m.dedupe_key
            metadata = m.metadata
            if key is not None:
                pair = (m.control_id, key)
                earlier = [e for e in self.same_as.get(pair, ())
                           if msgs[e].received_at >= m.received_at - dedupe_window]
                same = next((e for e in earlier if msgs[e].content_hash == m.content_hash
                             or msgs[e].content_hash is None or m.content_hash is None), None)
                if same is not None:
                    self.row_of.append(-1 - same)
                    continue
                if earlier:
                    first = self.rows[self.row_of[earlier[0]]]
                    metadata = {**metadata, REUSED: first[0]}
                    self.reused.add(len(self.rows))
                self.same_as.setdefault(pair, []).append(i)
            done = unroutable is not None and unroutable[i]
            self.row_of.append(len(self.rows))
            self.rows.append((
                new_id(m.received_at), m.channel, m.received_at, m.peer, m.content_type, m.charset,
                m.sending_application, m.sending_facility, m.control_id, m.message_type, stored_key(m),
                _FILTERED if done else _RECEIVED, NO_ROUTE if done else None, now if done else None,
                orjson.dumps(dict(metadata)).decode() if metadata else None, m.raw, key,
                m.received_at - dedupe_window))

    @property
    def one_statement(self) -> bool:
        """`run` writes with one INSERT (it may read afterwards, to find what it skipped)."""
        return len(self.rows) <= _CHUNKS[0]

    def run(self, conn: sqlite3.Connection) -> dict[int, str]:
        """Insert the rows (in the writer's transaction); {row: earlier stored id} for those skipped.

        Rows the statement flagged as reusing a control id are added to `reused` (read back by rowid:
        the rows of this run are the last ones inserted)."""
        rows = self.rows
        before = conn.total_changes
        at = 0
        last = 0
        keyed = False
        while at < len(rows):
            size = next(n for n in _CHUNKS if n <= len(rows) - at)
            chunk = rows[at:at + size]
            keyed = keyed or any(row[16] is not None for row in chunk)
            cur = conn.execute(_insert_unseen(size), [v for row in chunk for v in row])
            last = cur.lastrowid or last
            at += size
        inserted = conn.total_changes - before
        if keyed and inserted:
            flagged = {r[0] for r in conn.execute(
                "SELECT id FROM messages WHERE seq > ? AND metadata IS NOT NULL"
                " AND instr(metadata, ?) > 0", (last - inserted, f'"{REUSED}"'))}
            if flagged:
                self.reused.update(n for n, row in enumerate(rows) if row[0] in flagged)
        if inserted == len(rows):
            return {}
        return self._skipped(conn)

    def _skipped(self, conn: sqlite3.Connection) -> dict[int, str]:
        ids = [row[0] for row in self.rows]
        stored: set[str] = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            stored.update(r[0] for r in conn.execute(
                f"SELECT id FROM messages WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        skipped = {}
        for n, row in enumerate(self.rows):
            if row[0] not in stored:
                found = conn.execute(
                    "SELECT id FROM messages WHERE control_id IS ? AND dedupe_key IN (?, ?)"
                    " AND received_at >= ? AND state != 'rejected' ORDER BY received_at DESC LIMIT 1",
                    (row[8], row[10], row[16], row[2] - self.dedupe_window)).fetchone()
                skipped[n] = found[0] if found else ""
        return skipped

    def acceptances(self, skipped: dict[int, str]) -> list[Acceptance]:
        """Each message's answer, in order, given what `run` skipped."""
        out: list[Acceptance] = []
        for ref in self.row_of:
            if ref < 0:  # the same as an earlier message of this burst: whatever that one became
                out.append(Acceptance(message_id=out[-1 - ref].message_id, duplicate=True))
            elif ref in skipped:
                out.append(Acceptance(message_id=skipped[ref], duplicate=True))
            else:
                row = self.rows[ref]
                out.append(Acceptance(message_id=row[0], processed=row[11] == _FILTERED,
                                      reused=ref in self.reused))
        return out


@functools.lru_cache(maxsize=len(_CHUNKS))
def _insert_unseen(rows: int) -> str:
    """INSERT of `rows` rows, each only if no stored copy (same control id, key and content) is in the
    window; a row whose bare key an earlier message had with other content gets `control_id_reused`.

    Columns of VALUES are column1..column16 in `_INSERT` order, column17 the bare dedupe key and
    column18 the start of the row's dedupe window (no other parameters: their numbering would clash).
    """
    values = ",".join(["(" + ",".join("?" * 18) + ")"] * rows)
    same_key = "m.control_id IS v.column9 AND m.received_at >= v.column18 AND m.state != 'rejected'"
    columns = ", ".join(f"v.column{n}" for n in range(1, 15))
    metadata = ("CASE WHEN v.column17 IS NULL OR v.column11 = v.column17 THEN v.column15"
                f" ELSE coalesce((SELECT json_set(coalesce(v.column15, '{{}}'), '$.{REUSED}', m.id)"
                f" FROM messages m WHERE {same_key} AND m.dedupe_key > v.column17 || char(31)"
                " AND m.dedupe_key < v.column17 || char(32) LIMIT 1), v.column15) END")
    return (_INSERT.split(" VALUES ")[0] + f" SELECT {columns}, {metadata}, v.column16"
            f" FROM (VALUES {values}) AS v WHERE v.column11 IS NULL OR NOT EXISTS (SELECT 1 FROM messages m"
            f" WHERE {same_key} AND m.dedupe_key IN (v.column11, v.column17))")


def record_outcome(conn: sqlite3.Connection, message_id: str, state: MessageState, error: str | None,
                   results: Sequence[RouteResult], *, now: float | None = None) -> bool:
    """Set the processed state and keep each route's result; False if it was already processed.

    The `state = 'received'` guard makes processing idempotent: a message seen both in the pipeline's
    memory queue and in a recovery scan is recorded (and its deliveries created) once.
    """
    return message_id in record_outcomes(conn, [(message_id, state, error, results)], now=now)


def record_outcomes(conn: sqlite3.Connection,
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
            conn.execute("INSERT OR REPLACE INTO results (message_id, route_id, dataset, record, filtered,"
                         " error, created_at) VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * len(part)),
                         [v for row in part for v in row])
        recorded |= done
    return recorded


_OUTCOME_CHUNK = 200
"""Messages (and result rows) per statement of `record_outcomes`: at most 1,400 bound parameters."""


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
