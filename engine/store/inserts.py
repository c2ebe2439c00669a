"""Inserting inbound messages into the message log, with duplicate and reused-control-id detection.

A message with a content hash (`InboundMessage.content_hash`) is stored with the dedupe key
``<key>\x1f<hash>`` (`stored_key`): the `messages_lookup (control_id, dedupe_key)` index (see
migration 0001) then finds a retry (same key, same content: a duplicate) and, by the range
``<key>\x1f`` .. ``<key>\x20``, an earlier message whose key was reused for other content (stored as a
new message, flagged `control_id_reused` in its metadata: issue #16, a reused control id was AA'd and
discarded). Rows stored before content hashes existed keep the bare key and still count as duplicates
of a retry.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, cast

import orjson

from engine.ids import new_id
from engine.store import pg_inserts
from engine.store.connection import Connection, Dialect, dialect_of
from engine.types import Acceptance, InboundMessage, MessageState

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


def insert(conn: Connection, msg: InboundMessage, *, dedupe_window: float,
           state: MessageState = MessageState.RECEIVED, error: str | None = None) -> Acceptance:
    """Store one message, or report the earlier copy when it is a duplicate within the window (see
    the module docstring); a `rejected` message is always stored, never deduplicated."""
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


def insert_many(conn: Connection, msgs: Sequence[InboundMessage], *, dedupe_window: float,
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

    def run(self, conn: Connection) -> dict[int, str]:
        """Insert the rows (in the writer's transaction); {row: earlier stored id} for those skipped.

        Rows the statement flagged as reusing a control id are added to `reused` (read back by rowid:
        the rows of this run are the last ones inserted)."""
        if dialect_of(conn) is Dialect.POSTGRES:
            return self._run_postgres(conn)
        return self._run_sqlite(cast(sqlite3.Connection, conn))

    def _run_sqlite(self, conn: sqlite3.Connection) -> dict[int, str]:
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

    def _run_postgres(self, conn: Connection) -> dict[int, str]:
        """The duplicate check as a constraint across nodes (engine/store/pg_inserts.py)."""
        skipped, flagged = pg_inserts.run(conn, self.rows, self.dedupe_window)
        if flagged:
            self.reused.update(n for n, row in enumerate(self.rows) if row[0] in flagged)
        return skipped

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
