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
from collections.abc import Callable, Sequence
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


Seal = Callable[[bytes], bytes]
"""What the raw bytes are stored as: the store cipher's `seal` (engine/store/cipher.py); None keeps them."""


def insert(conn: Connection, msg: InboundMessage, *, dedupe_window: float,
           state: MessageState = MessageState.RECEIVED, error: str | None = None,
           seal: Seal | None = None) -> Acceptance:
    """Store one message, or report the earlier copy when it is a duplicate within the window (see
    the module docstring); a `rejected` message is always stored, never deduplicated."""
    if state is MessageState.RECEIVED:
        plan = InsertPlan([msg], dedupe_window=dedupe_window, seal=seal)
        return plan.acceptances(plan.run(conn))[0]
    message_id = new_id(msg.received_at)
    conn.execute(
        _INSERT,
        (message_id, msg.channel, msg.received_at, msg.peer, msg.content_type, msg.charset,
         msg.sending_application, msg.sending_facility, msg.control_id, msg.message_type,
         stored_key(msg), state.value, error, None,
         orjson.dumps(dict(msg.metadata)).decode() if msg.metadata else None,
         msg.raw if seal is None else seal(msg.raw)))
    return Acceptance(message_id=message_id)


_INSERT = ("INSERT INTO messages (id, channel, received_at, peer, content_type, charset, sending_application,"
           " sending_facility, control_id, message_type, dedupe_key, state, error, processed_at, metadata,"
           " raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


def insert_many(conn: Connection, msgs: Sequence[InboundMessage], *, dedupe_window: float,
                unroutable: Sequence[bool] | None = None, seal: Seal | None = None) -> list[Acceptance]:
    """`insert` for a burst of messages (same answers as inserting each in order); see `InsertPlan`."""
    plan = InsertPlan(msgs, dedupe_window=dedupe_window, unroutable=unroutable, seal=seal)
    return plan.acceptances(plan.run(conn))


NO_ROUTE = "no route matched"
"""The error text of a message no route selected (`engine.pipeline.decide` gives the same)."""
_FILTERED, _RECEIVED = MessageState.FILTERED.value, MessageState.RECEIVED.value
_CHUNKS = (256, 64, 16, 4, 1)
"""Rows per INSERT statement: a few fixed sizes, so SQLite's statement cache holds them all."""


class InsertPlan:
    """A burst of inbound messages as rows for one multi-row INSERT, built before the writer runs it.

    The rows (and their ids) are made by the caller, on the event loop; the writer thread only runs
    `run`: one SELECT of the stored messages the keyed rows may repeat, then one multi-row
    `INSERT ... VALUES` per 256 rows. One statement means one `sqlite3_step`, during which the writer
    does not hold the GIL: with `executemany` it took the GIL back after every row, and waited for the
    event loop each time (measured: a 16-row commit took 3.3 ms in the engine against 1.3 ms alone).
    The writer thread is the store's only writer, so nothing commits between the read and the INSERT.

    A message whose (control id, dedupe key, content hash) repeats an earlier one of the same burst is
    that one's duplicate without a row; one that repeats a stored message within the window is skipped
    (rare: a sender's retry). A reused control id (same key, other content) is a new row flagged
    `control_id_reused`: here when the earlier message is in the same burst, in `run` when it is stored.
    `unroutable[i]` marks a message of a channel no route can select: it is stored already
    `filtered` ("no route matched", what the pipeline would decide), so it costs no second write.
    `seal` (the store cipher's, when encryption is on) turns each raw message into what is stored,
    here on the loop, before the writer runs.
    """

    __slots__ = ("dedupe_window", "msgs", "reused", "row_of", "rows", "same_as")

    def __init__(self, msgs: Sequence[InboundMessage], *, dedupe_window: float,
                 unroutable: Sequence[bool] | None = None, seal: Seal | None = None) -> None:
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
                orjson.dumps(dict(metadata)).decode() if metadata else None,
                m.raw if seal is None else seal(m.raw), key,
                m.received_at - dedupe_window))

    @property
    def one_statement(self) -> bool:
        """`run` writes with one INSERT (it may read afterwards, to find what it skipped)."""
        return len(self.rows) <= _CHUNKS[0]

    def run(self, conn: Connection) -> dict[int, str]:
        """Insert the rows (in the writer's transaction); {row: earlier stored id} for those skipped.

        One read finds the stored messages the keyed rows may repeat (`_stored`: duplicates are
        skipped, a reused control id flags its row), then one multi-row INSERT writes the rest. On
        PostgreSQL the duplicate check is a constraint across nodes instead (`_run_postgres`)."""
        if dialect_of(conn) is Dialect.POSTGRES:
            return self._run_postgres(conn)
        return self._run_sqlite(cast(sqlite3.Connection, conn))

    def _run_sqlite(self, conn: sqlite3.Connection) -> dict[int, str]:
        skipped = self._stored(conn) if any(row[16] is not None for row in self.rows) else {}
        rows = [row for n, row in enumerate(self.rows) if n not in skipped] if skipped else self.rows
        at = 0
        while at < len(rows):
            size = next(n for n in _CHUNKS if n <= len(rows) - at)
            conn.execute(_insert_values(size), [v for row in rows[at:at + size] for v in row[:16]])
            at += size
        return skipped

    def _stored(self, conn: sqlite3.Connection) -> dict[int, str]:
        """Look up, for every keyed row, the stored messages in its window with its control id and its
        key (bare, or with any content hash): {row: id} of the rows a stored message already holds
        (the latest such message), and rows whose key a stored message had with other content get
        `control_id_reused` (the first such message in the index) and join `reused`."""
        keyed = [n for n, row in enumerate(self.rows) if row[16] is not None]
        found: dict[int, list[tuple[str, str, float, int]]] = {}
        at = 0
        while at < len(keyed):
            size = next(n for n in _CHUNKS if n <= len(keyed) - at)
            params: list[object] = []
            for n in keyed[at:at + size]:
                row = self.rows[n]
                params += (n, row[8], row[16], row[17])  # control id, bare key, window start
            for n, mid, key, received, seq in conn.execute(_lookup(size), params).fetchall():
                found.setdefault(n, []).append((mid, key, received, seq))
            at += size
        skipped: dict[int, str] = {}
        for n, hits in found.items():
            row = self.rows[n]
            stored, bare = row[10], row[16]
            same = [h for h in hits if h[1] in (stored, bare)]
            if same:
                skipped[n] = max(same, key=lambda h: h[2])[0]
                continue
            prefix = f"{bare}{KEY_SEP}"
            other = [h for h in hits if h[1].startswith(prefix)] if stored != bare else []
            if other:
                first = min(other, key=lambda h: (h[1], h[3]))[0]
                metadata = {**(orjson.loads(row[14]) if row[14] else {}), REUSED: first}
                self.rows[n] = (*row[:14], orjson.dumps(metadata).decode(), *row[15:])
                self.reused.add(n)
        return skipped

    def _run_postgres(self, conn: Connection) -> dict[int, str]:
        """The duplicate check as a constraint across nodes (engine/store/pg_inserts.py)."""
        skipped, flagged = pg_inserts.run(conn, self.rows, self.dedupe_window)
        if flagged:
            self.reused.update(n for n, row in enumerate(self.rows) if row[0] in flagged)
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
def _insert_values(rows: int) -> str:
    """INSERT of `rows` rows (`_INSERT` with a multi-row VALUES: one statement, one `sqlite3_step`).

    Not an INSERT ... SELECT that checks for earlier copies itself: a SELECT that reads `messages`
    makes SQLite stage every row (raw bytes included) in a temporary table before inserting it."""
    return _INSERT.split(" VALUES ")[0] + " VALUES " + ",".join(["(" + ",".join("?" * 16) + ")"] * rows)


@functools.lru_cache(maxsize=len(_CHUNKS))
def _lookup(rows: int) -> str:
    """SELECT of the stored messages `rows` keyed rows may repeat: VALUES (row number, control id,
    bare dedupe key, window start) joined with `messages_lookup` on the key range ``key`` ..
    ``key || char(32)`` (the bare key and every ``key \x1f hash``)."""
    values = ",".join(["(?,?,?,?)"] * rows)
    return ("SELECT v.column1, m.id, m.dedupe_key, m.received_at, m.seq"
            f" FROM (VALUES {values}) AS v, messages m WHERE m.control_id IS v.column2"
            " AND m.dedupe_key >= v.column3 AND m.dedupe_key < v.column3 || char(32)"
            " AND m.received_at >= v.column4 AND m.state != 'rejected'")
