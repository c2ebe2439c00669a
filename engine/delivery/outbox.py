"""The delivery queue, dead-letter queue and DLQ audit log: tables and the SQL that works on them.

One `deliveries` row per (message, route, destination); `state` (`DeliveryState`, engine/types.py)
goes `queued` → `sent` | `dead`; the SQL below spells those values as literals (partial indexes need
them). Rows are claimed by the workers *in memory* only (the row stays `queued` in the store while a
send is in flight), so a crash leaves every unfinished delivery queued: at-least-once, with the same
delivery id (the `Idempotency-Key`) on the retry. Functions take a connection and run inside the
store's writer or a reader, so the pipeline can create rows in the same transaction as the mapped result.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from engine.ids import new_id
from engine.store.connection import Connection
from engine.types import DeadLetterKind, DeliveryState

# Tables: deliveries, delivery_attempts, dead_letters, dlq_audit (engine/store/migrations/0001_schema.*.sql).

ATTEMPT_REPLACES = (" ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = excluded.at,"
                    " result = excluded.result, error = excluded.error, response = excluded.response")
"""An attempt logged again replaces the earlier row (SQLite and PostgreSQL alike); every column is given."""

_DELIVERY_COLUMNS = ("seq, id, message_id, destination, route_id, dataset, channel, attempts, created_at, "
                     "first_attempt_at, order_value, content_type, payload, next_attempt_at")
_DEAD_COLUMNS = ("id, kind, message_id, channel, destination, route_id, dataset, delivery_id, attempts, "
                 "first_attempt_at, last_attempt_at, created_at, error")


@dataclass(frozen=True, slots=True)
class Pending:
    """A queued delivery as a worker holds it while sending."""

    seq: int
    id: str
    message_id: str
    destination: str
    route_id: str
    dataset: str | None
    channel: str | None
    attempts: int
    created_at: float
    first_attempt_at: float | None
    order_value: str | None
    content_type: str
    payload: bytes
    next_attempt_at: float


def _pending(row: Sequence[Any]) -> Pending:
    return Pending(seq=row[0], id=row[1], message_id=row[2], destination=row[3], route_id=row[4],
                   dataset=row[5], channel=row[6], attempts=row[7], created_at=row[8],
                   first_attempt_at=row[9], order_value=row[10], content_type=row[11],
                   payload=bytes(row[12] or b""), next_attempt_at=row[13])


# --- writes from the pipeline -------------------------------------------------------------------


def enqueue(conn: Connection, *, message_id: str, destination: str, route_id: str,
            dataset: str | None, channel: str | None, payload: bytes, content_type: str,
            order_value: str | None, now: float) -> bool:
    """Create the delivery row, or re-queue a `dead` one with the new payload (replay with remap).

    A row already `queued` or `sent` is left alone: processing the same message twice (recovery scan
    plus memory queue) never sends it twice. Returns True when a row is now queued for sending.
    """
    cur = conn.execute(
        "INSERT INTO deliveries (id, message_id, destination, route_id, dataset, channel, state, attempts,"
        " next_attempt_at, created_at, order_value, content_type, payload)"
        " VALUES (?,?,?,?,?,?,'queued',0,?,?,?,?,?)"
        " ON CONFLICT (message_id, route_id, destination) DO UPDATE SET state = 'queued', attempts = 0,"
        " next_attempt_at = excluded.next_attempt_at, created_at = excluded.created_at,"
        " payload = excluded.payload, content_type = excluded.content_type, dataset = excluded.dataset,"
        " order_value = excluded.order_value, last_error = NULL WHERE deliveries.state = 'dead'",
        (new_id(now), message_id, destination, route_id, dataset, channel, now, now, order_value,
         content_type, payload))
    return cur.rowcount > 0


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery row the pipeline is about to create (see `enqueue_many`)."""

    message_id: str
    destination: str
    route_id: str
    dataset: str | None
    channel: str | None
    payload: bytes
    content_type: str
    order_value: str | None


_ENQUEUE_CHUNK = 500
"""Rows per multi-row INSERT (13 bound values each; well under SQLite's 32,766-variable limit)."""
_ENQUEUE_HEAD = ("INSERT INTO deliveries (id, message_id, destination, route_id, dataset, channel, state,"
                 " attempts, next_attempt_at, created_at, order_value, content_type, payload) VALUES ")
_ENQUEUE_TAIL = (" ON CONFLICT (message_id, route_id, destination) DO UPDATE SET state = 'queued',"
                 " attempts = 0, next_attempt_at = excluded.next_attempt_at,"
                 " created_at = excluded.created_at, payload = excluded.payload,"
                 " content_type = excluded.content_type, dataset = excluded.dataset,"
                 " order_value = excluded.order_value, last_error = NULL WHERE deliveries.state = 'dead'"
                 " RETURNING seq, id, first_attempt_at, message_id, route_id, destination")


def enqueue_many(conn: Connection, rows: Sequence[NewDelivery], *, now: float) -> list[Pending]:
    """`enqueue` for many rows: one multi-row INSERT per 500, answering the rows now queued.

    Same rules as `enqueue` (a `queued` or `sent` row is left alone, a `dead` one is re-queued with
    the new payload and keeps its id). One statement instead of one per row: the writer thread steps
    into SQLite (and gives up the GIL) once per chunk rather than once per delivery. The answer is
    what a worker needs to send the rows without reading them back (`DestinationWorker.offer`).
    """
    by_key = {(r.message_id, r.route_id, r.destination): r for r in rows}
    out: list[Pending] = []
    for start in range(0, len(rows), _ENQUEUE_CHUNK):
        chunk = rows[start:start + _ENQUEUE_CHUNK]
        values: list[Any] = []
        for r in chunk:
            values += (new_id(now), r.message_id, r.destination, r.route_id, r.dataset, r.channel, now, now,
                       r.order_value, r.content_type, r.payload)
        sql = _ENQUEUE_HEAD + ",".join(["(?,?,?,?,?,?,'queued',0,?,?,?,?,?)"] * len(chunk)) + _ENQUEUE_TAIL
        for seq, delivery_id, first_at, message_id, route_id, destination in conn.execute(sql, values):
            r = by_key[(message_id, route_id, destination)]
            out.append(Pending(seq=seq, id=delivery_id, message_id=message_id, destination=destination,
                               route_id=route_id, dataset=r.dataset, channel=r.channel, attempts=0,
                               created_at=now, first_attempt_at=first_at, order_value=r.order_value,
                               content_type=r.content_type, payload=r.payload, next_attempt_at=now))
    out.sort(key=lambda p: p.seq)
    return out


def add_dead_letter(conn: Connection, *, kind: DeadLetterKind, message_id: str, error: str,
                    now: float,
                    channel: str | None = None, destination: str | None = None, route_id: str | None = None,
                    dataset: str | None = None, delivery_id: str | None = None, attempts: int = 0,
                    first_attempt_at: float | None = None, last_attempt_at: float | None = None) -> str:
    """Record a dead letter; returns its id."""
    dead_id = new_id(now)
    conn.execute(f"INSERT INTO dead_letters ({_DEAD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (dead_id, kind, message_id, channel, destination, route_id, dataset, delivery_id, attempts,
                  first_attempt_at, last_attempt_at, now, error))
    return dead_id


# --- claims and outcomes from the workers -------------------------------------------------------


def owned(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The SQL condition (and its parameter) limiting a claim to `owner`'s rows; nothing when None.

    In a cluster (engine/cluster/) each node sends the rows it owns: those its pipeline created and
    those whose lease it took over from a gone node. One node alone owns everything: no condition, so
    the single-node SQL is the same as before clusters.
    """
    return ("", ()) if owner is None else (" AND owner = ?", (owner,))


def next_due(conn: Connection, destination: str, after: float, *, owner: str | None = None) -> float | None:
    """The earliest retry time after `after` (when the worker should look again), or None."""
    mine, param = owned(owner)
    row = conn.execute("SELECT min(next_attempt_at) FROM deliveries WHERE destination = ?"
                       f" AND state = 'queued' AND next_attempt_at > ?{mine}",
                       (destination, after, *param)).fetchone()
    return row[0] if row else None


ClaimKey = tuple[float, int]
"""(next_attempt_at, seq) of the last row a claim read: where the next page of a sweep starts."""


def claim_due(conn: Connection, destination: str, now: float, limit: int,
              exclude: Collection[str], after: ClaimKey | None = None, owner: str | None = None,
              ) -> tuple[list[Pending], float | None, ClaimKey | None]:
    """Due deliveries by due time (a retrying row never holds back fresher ones), skipping in-flight ids.

    Answers the rows, the next retry time, and the key to continue from when the page was full
    (None: no more due rows). With `after` the read starts behind that key (keyset paging through a
    backlog) instead of re-reading the rows the worker already holds. With `owner`, only that node's
    rows (`owned`).
    """
    mine, param = owned(owner)
    if after is None:
        rows = conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE destination = ? AND state = 'queued'"
            f" AND next_attempt_at <= ?{mine} ORDER BY next_attempt_at, seq LIMIT ?",
            (destination, now, *param, limit + len(exclude))).fetchall()
        full = len(rows) >= limit + len(exclude)
    else:
        rows = conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE destination = ? AND state = 'queued'"
            f" AND next_attempt_at <= ? AND (next_attempt_at, seq) > (?, ?){mine}"
            " ORDER BY next_attempt_at, seq LIMIT ?",
            (destination, now, after[0], after[1], *param, limit)).fetchall()
        full = len(rows) >= limit
    out = [_pending(r) for r in rows if r[1] not in exclude][:limit]
    last = (rows[-1][13], rows[-1][0]) if full and rows else None
    return out, next_due(conn, destination, now, owner=owner), last


def claim_heads(conn: Connection, destination: str, window: int,
                exclude_keys: Collection[str | None], *, run: int = 1) -> list[list[Pending]]:
    """For each order key, its oldest queued deliveries (up to `run`, in order), due or not (FIFO).

    Only the first `window` queued rows are looked at; rows come in creation order, so the first row
    seen for a key is that key's head, and keys whose head lies beyond the window wait for a later
    claim. Keys with a send in flight are skipped.
    """
    rows = conn.execute(
        f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE destination = ? AND state = 'queued'"
        " ORDER BY seq LIMIT ?", (destination, window)).fetchall()
    runs: dict[str | None, list[Pending]] = {}
    for row in rows:
        key = row[10]
        if key in exclude_keys:
            continue
        found = runs.setdefault(key, [])
        if len(found) < run:
            found.append(_pending(row))
    return list(runs.values())


def _log_attempt(conn: Connection, delivery_id: str, attempt: int, now: float, result: str,
                 error: str | None, response: str | None) -> None:
    """One row per attempt, so a message's path shows every try with its time and outcome."""
    conn.execute("INSERT INTO delivery_attempts"
                 " (delivery_id, attempt, at, result, error, response) VALUES (?,?,?,?,?,?)"
                 + ATTEMPT_REPLACES,
                 (delivery_id, attempt, now, result, error[:500] if error else None,
                  response[:500] if response else None))


def mark_sent(conn: Connection, delivery_id: str, *, attempts: int, now: float,
              response: str) -> None:
    _log_attempt(conn, delivery_id, attempts, now, "sent", None, response)
    conn.execute("UPDATE deliveries SET state = 'sent', attempts = ?, last_attempt_at = ?,"
                 " first_attempt_at = coalesce(first_attempt_at, ?), last_response = ?, last_error = NULL"
                 " WHERE id = ? AND state = 'queued'", (attempts, now, now, response[:2000], delivery_id))


def mark_sent_many(conn: Connection, sent: Sequence[tuple[str, int, str]], *, now: float) -> None:
    """`mark_sent` for many deliveries at once: `(delivery_id, attempts, response)` each.

    One attempt-log INSERT and one UPDATE for the lot (a CTE of the values joined by id), instead of
    two statements per delivery: the writer thread's cost per sent delivery is what bounds the rate.
    """
    for start in range(0, len(sent), _ENQUEUE_CHUNK):
        chunk = sent[start:start + _ENQUEUE_CHUNK]
        log_values: list[Any] = []
        upd_values: list[Any] = []
        for delivery_id, attempts, response in chunk:
            log_values += (delivery_id, attempts, now, response[:500] or None)
            upd_values += (delivery_id, attempts, response[:2000])
        conn.execute("INSERT INTO delivery_attempts (delivery_id, attempt, at, result, error, response)"
                     " VALUES " + ",".join(["(?,?,?,'sent',NULL,?)"] * len(chunk)) + ATTEMPT_REPLACES,
                     log_values)
        conn.execute("WITH v(id, attempts, response) AS (VALUES " + ",".join(["(?,?,?)"] * len(chunk)) + ")"
                     " UPDATE deliveries SET state = 'sent', attempts = v.attempts, last_attempt_at = ?,"
                     " first_attempt_at = coalesce(first_attempt_at, ?), last_response = v.response,"
                     " last_error = NULL FROM v WHERE deliveries.id = v.id AND deliveries.state = 'queued'",
                     [*upd_values, now, now])


def mark_retry(conn: Connection, delivery_id: str, *, attempts: int, now: float, next_at: float,
               error: str, response: str | None) -> None:
    _log_attempt(conn, delivery_id, attempts, now, "retry", error, response)
    conn.execute("UPDATE deliveries SET attempts = ?, last_attempt_at = ?, next_attempt_at = ?,"
                 " first_attempt_at = coalesce(first_attempt_at, ?), last_error = ?, last_response = ?"
                 " WHERE id = ? AND state = 'queued'",
                 (attempts, now, next_at, now, error[:2000], (response or "")[:2000] or None, delivery_id))


def mark_split_many(conn: Connection, rows: Sequence[Pending], *, now: float, error: str,
                    response: str | None) -> None:
    """A batch refused as a whole: log a `split` attempt for each row (each is sent again on its own)."""
    for row in rows:
        _log_attempt(conn, row.id, row.attempts + 1, now, "split", error, response)
        conn.execute("UPDATE deliveries SET attempts = ?, last_attempt_at = ?,"
                     " first_attempt_at = coalesce(first_attempt_at, ?), last_error = ?, last_response = ?"
                     " WHERE id = ? AND state = 'queued'",
                     (row.attempts + 1, now, now, error[:2000], (response or "")[:2000] or None, row.id))


def mark_dead(conn: Connection, item: Pending, *, attempts: int, now: float, error: str,
              response: str | None) -> str | None:
    """Move a delivery to `dead` and add its dead letter; None if it was no longer queued."""
    cur = conn.execute("UPDATE deliveries SET state = 'dead', attempts = ?, last_attempt_at = ?,"
                       " first_attempt_at = coalesce(first_attempt_at, ?), last_error = ?, last_response = ?"
                       " WHERE id = ? AND state = 'queued'",
                       (attempts, now, now, error[:2000], (response or "")[:2000] or None, item.id))
    if cur.rowcount == 0:
        return None
    _log_attempt(conn, item.id, attempts, now, "dead", error, response)
    return add_dead_letter(conn, kind=DeadLetterKind.DELIVERY, message_id=item.message_id,
                           error=error[:2000], now=now,
                           channel=item.channel, destination=item.destination, route_id=item.route_id,
                           dataset=item.dataset, delivery_id=item.id, attempts=attempts,
                           first_attempt_at=item.first_attempt_at or now, last_attempt_at=now)


# --- status and retention ----------------------------------------------------------------------


def _blank() -> dict[str, Any]:
    return {"queued": 0, "retrying": 0, "sent": 0, "dead": 0, "dead_letters": 0, "oldest_queued": None}


def sent_counts(conn: Connection) -> dict[str, int]:
    """Sent deliveries per destination: a full scan, so only at start-up (workers count from there)."""
    return dict(conn.execute("SELECT destination, count(*) FROM deliveries WHERE state = 'sent'"
                             " GROUP BY destination").fetchall())


def destination_counts(conn: Connection) -> dict[str, dict[str, Any]]:
    """Per destination: queued, retrying (queued with attempts > 0), dead, dead letters, oldest queued.

    Reads only the queued and dead rows (partial indexes), never the ever-growing sent history.
    """
    out: dict[str, dict[str, Any]] = {}
    for dest, n, retrying, oldest in conn.execute(
            "SELECT destination, count(*), sum(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), min(created_at)"
            " FROM deliveries"
            " WHERE state = 'queued' GROUP BY destination"):
        out.setdefault(dest, _blank()).update(queued=n, retrying=retrying or 0, oldest_queued=oldest)
    for dest, n in conn.execute("SELECT destination, count(*) FROM deliveries WHERE state = 'dead'"
                                " GROUP BY destination"):
        out.setdefault(dest, _blank())["dead"] = n
    for dest, n in conn.execute("SELECT destination, count(*) FROM dead_letters GROUP BY destination"):
        out.setdefault(dest or "", _blank())["dead_letters"] = n
    return out


def prune(conn: Connection, *, older_than: float) -> int:
    """Drop payloads of deliveries sent before `older_than` (rows stay; dead letters are never pruned)."""
    cur = conn.execute("UPDATE deliveries SET payload = NULL WHERE state = 'sent' AND payload IS NOT NULL"
                       " AND last_attempt_at < ?", (older_than,))
    return cur.rowcount


def delivery_states(conn: Connection, message_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Per message, each delivery's destination, state, attempts and next attempt (the message list)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for start in range(0, len(message_ids), 500):  # SQLite's bound-variable limit is 999 on old builds
        chunk = list(message_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for mid, dest, state, attempts, next_at in conn.execute(
                "SELECT message_id, destination, state, attempts, next_attempt_at FROM deliveries"
                f" WHERE message_id IN ({marks}) ORDER BY seq", chunk):
            out.setdefault(mid, []).append({
                "destination": dest, "state": state, "attempts": attempts,
                "next_attempt_at": next_at if state == DeliveryState.QUEUED and attempts else None})
    return out


def deliveries_of(conn: Connection, message_id: str) -> list[dict[str, Any]]:
    """Each delivery of a message (no payload) with its `attempt_log`, for the message path view."""
    rows = conn.execute(
        "SELECT id, destination, route_id, dataset, state, attempts, created_at, first_attempt_at,"
        " last_attempt_at, next_attempt_at, last_error, last_response FROM deliveries"
        " WHERE message_id = ? ORDER BY seq", (message_id,)).fetchall()
    out = []
    for r in rows:
        attempts = conn.execute("SELECT attempt, at, result, error, response FROM delivery_attempts"
                                " WHERE delivery_id = ? ORDER BY attempt", (r[0],)).fetchall()
        out.append({
            "id": r[0], "destination": r[1], "route_id": r[2], "dataset": r[3], "state": r[4],
            "attempts": r[5], "created_at": r[6], "first_attempt_at": r[7], "last_attempt_at": r[8],
            "next_attempt_at": r[9] if r[4] == DeliveryState.QUEUED else None, "last_error": r[10],
            "last_response": r[11],
            "attempt_log": [{"attempt": a[0], "at": a[1], "result": a[2], "error": a[3], "response": a[4]}
                            for a in attempts],
        })
    return out
