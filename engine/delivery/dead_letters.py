"""Dead-letter queries for the admin API: search, show, re-queue, purge, and the audit log.

A dead letter is either a delivery that failed permanently or ran out of attempts/age (`kind:
delivery`, its payload is the delivery row's) or a message that could not be mapped or routed (`kind:
mapping`, its payload is the stored raw message). Dead letters are never pruned automatically; a purge
is an explicit act recorded in `dlq_audit` with who and when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine.delivery.outbox import _DEAD_COLUMNS
from engine.errors import PayloadCipherError
from engine.store.cipher import PLAIN, PayloadCipher
from engine.store.connection import Connection
from engine.store.filters import Filters
from engine.types import DeadLetterKind

MAX_PAGE = 1000
"""Largest page `GET /dlq` returns."""


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    """Filters shared by `GET /dlq`, `POST /dlq/replay` and the CLI; `before` pages backwards by id."""

    channel: str | None = None
    destination: str | None = None
    kind: DeadLetterKind | None = None
    error: str | None = None
    since: float | None = None
    until: float | None = None
    before: str | None = None
    limit: int = 50


def _row(row: Sequence[Any]) -> dict[str, Any]:
    keys = [k.strip() for k in _DEAD_COLUMNS.split(",")]
    return dict(zip(keys, row, strict=True))


def search(conn: Connection, q: DeadLetterQuery) -> list[dict[str, Any]]:
    """Newest first; no payloads."""
    f = Filters().equal(channel=q.channel, destination=q.destination, kind=q.kind)
    f.add("instr(lower(error), lower(?)) > 0", q.error or None)
    f.add("created_at >= ?", q.since).add("created_at < ?", q.until)
    sql, args = f.page(_DEAD_COLUMNS, "dead_letters", before=q.before, limit=q.limit, max_limit=MAX_PAGE)
    items = [_row(r) for r in conn.execute(sql, args).fetchall()]
    with_message_header(conn, items)
    return items


def count_between(conn: Connection, *, start: float, end: float) -> int:
    """Dead letters created in [start, end) (the console's traffic history; uses `dead_letters_time`)."""
    row = conn.execute("SELECT count(*) FROM dead_letters WHERE created_at >= ? AND created_at < ?",
                       (start, end)).fetchone()
    return int(row[0]) if row else 0


def with_message_header(conn: Connection, items: list[dict[str, Any]]) -> None:
    """Add each dead letter's message control id (MSH-10) and sending organisation (MSH-4), so ops can
    match it with the sender's log without opening every message (one query per page)."""
    ids = sorted({i["message_id"] for i in items if i.get("message_id")})
    header: dict[str, tuple[Any, Any]] = {}
    for start in range(0, len(ids), 500):  # SQLite's bound-variable limit is 999 on old builds
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for mid, control_id, facility in conn.execute(
                f"SELECT id, control_id, sending_facility FROM messages WHERE id IN ({marks})", chunk):
            header[mid] = (control_id, facility)
    for item in items:
        item["control_id"], item["sending_facility"] = header.get(item.get("message_id") or "", (None, None))


def kind_of(conn: Connection, dead_id: str) -> DeadLetterKind | None:
    """The dead letter's kind, or None when there is none with that id."""
    row = conn.execute("SELECT kind FROM dead_letters WHERE id = ?", (dead_id,)).fetchone()
    return None if row is None else DeadLetterKind(row[0])


def get(conn: Connection, dead_id: str, *, with_payload: bool,
        cipher: PayloadCipher = PLAIN) -> dict[str, Any] | None:
    """One dead letter; with its payload (delivery payload or raw message) when asked, decrypted with
    `cipher` (one that cannot be is None, with `payload_error` and `key_id` saying why)."""
    row = conn.execute(f"SELECT {_DEAD_COLUMNS} FROM dead_letters WHERE id = ?", (dead_id,)).fetchone()
    if row is None:
        return None
    item = _row(row)
    if with_payload:
        if item["kind"] == DeadLetterKind.DELIVERY and item["delivery_id"]:
            p = conn.execute("SELECT payload, content_type, last_response FROM deliveries WHERE id = ?",
                             (item["delivery_id"],)).fetchone()
            payload, ctype = (p[0], p[1]) if p else (None, None)
            item["last_response"] = p[2] if p else None
        else:
            m = conn.execute("SELECT raw, content_type FROM messages WHERE id = ?",
                             (item["message_id"],)).fetchone()
            payload, ctype = (m[0], m[1]) if m else (None, None)
        item["content_type"] = ctype
        try:
            item["payload"] = _render(None if payload is None else cipher.unseal(bytes(payload)), ctype)
        except PayloadCipherError as exc:
            item["payload"], item["payload_error"], item["key_id"] = None, str(exc), exc.key_id
    return item


def _render(payload: bytes | None, content_type: str | None) -> Any:
    if payload is None:
        return None
    if content_type and "json" in content_type:
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
    return bytes(payload).decode("utf-8", errors="replace")


def requeue(conn: Connection, dead_id: str, *, now: float, who: str) -> str | None:
    """Re-send the stored payload: the delivery goes back to `queued` with fresh attempts and age.

    Returns the destination to wake, or None when the dead letter is gone or is not a delivery.
    """
    row = conn.execute("SELECT kind, delivery_id, destination, message_id FROM dead_letters WHERE id = ?",
                       (dead_id,)).fetchone()
    if row is None or row[0] != DeadLetterKind.DELIVERY or row[1] is None:
        return None
    cur = conn.execute("UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = ?,"
                       " created_at = ?, first_attempt_at = NULL, last_error = NULL"
                       " WHERE id = ? AND state = 'dead' AND payload IS NOT NULL", (now, now, row[1]))
    if cur.rowcount == 0:
        return None
    conn.execute("DELETE FROM dead_letters WHERE id = ?", (dead_id,))
    audit(conn, now=now, action="replay", who=who, dead_letter_id=dead_id, message_id=row[3],
          destination=row[2], detail="resend stored payload")
    return str(row[2])


def prepare_remap(conn: Connection, dead_id: str, *, now: float, who: str) -> str | None:
    """Put the dead letter's message back to `received` (the caller resubmits it to the pipeline).

    Every dead letter of that message is removed: mapping it again re-creates whatever still fails.
    Returns the message id, or None when the dead letter is gone or the raw message was pruned.
    """
    from engine.store import messages

    row = conn.execute("SELECT message_id, destination FROM dead_letters WHERE id = ?", (dead_id,)).fetchone()
    if row is None:
        return None
    message_id = str(row[0])
    has_raw = conn.execute("SELECT raw IS NOT NULL FROM messages WHERE id = ?", (message_id,)).fetchone()
    if not has_raw or not has_raw[0]:
        return None
    messages.reset_for_remap(conn, message_id)
    conn.execute("DELETE FROM dead_letters WHERE message_id = ?", (message_id,))
    audit(conn, now=now, action="replay", who=who, dead_letter_id=dead_id, message_id=message_id,
          destination=row[1], detail="remap from stored raw message")
    return message_id


def purge(conn: Connection, dead_id: str, *, now: float, who: str) -> bool:
    """Delete a dead letter for good, leaving an audit row (who, when, what)."""
    row = conn.execute("SELECT message_id, destination, kind, error FROM dead_letters WHERE id = ?",
                       (dead_id,)).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM dead_letters WHERE id = ?", (dead_id,))
    audit(conn, now=now, action="purge", who=who, dead_letter_id=dead_id, message_id=row[0],
          destination=row[1], detail=f"kind={row[2]}")
    return True


def audit(conn: Connection, *, now: float, action: str, who: str, dead_letter_id: str | None,
          message_id: str | None, destination: str | None, detail: str | None) -> None:
    conn.execute("INSERT INTO dlq_audit (at, action, who, dead_letter_id, message_id, destination, detail)"
                 " VALUES (?,?,?,?,?,?,?)",
                 (now, action, who, dead_letter_id, message_id, destination, detail))


def audit_log(conn: Connection, *, limit: int = 100) -> list[dict[str, Any]]:
    """Newest audit rows first."""
    rows = conn.execute("SELECT at, action, who, dead_letter_id, message_id, destination, detail"
                        " FROM dlq_audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
    keys = ("at", "action", "who", "dead_letter_id", "message_id", "destination", "detail")
    return [dict(zip(keys, r, strict=True)) for r in rows]
