"""Dead-lettering by time while a destination is down: the SQL of the retry budget sweep.

While a destination is `down` its worker probes one delivery at a time (engine/delivery/worker.py),
so the other queued deliveries make no attempts and `max_attempts` alone would never end them. The
worker therefore dead-letters every queued delivery older than the policy's budget
(`engine.delivery.retry.retry_budget`: the no-jitter schedule of `max_attempts`, capped by `max_age`).
A swept delivery keeps its real attempt count; its dead letter and path say why it ended.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from engine.delivery.outbox import ATTEMPT_REPLACES, Pending, add_dead_letter, owned
from engine.store.connection import Connection
from engine.types import DeadLetterKind

SWEEP_LIMIT = 2000
"""Deliveries one sweep dead-letters from the store (one bounded write; the worker sweeps again)."""
BUDGET_REASON = "retry budget spent while destination down"
"""How a swept delivery's dead letter starts; the destination's last error follows."""


def _expire(conn: Connection, row: Pending, *, now: float, error: str) -> bool:
    cur = conn.execute("UPDATE deliveries SET state = 'dead', last_error = ?"
                       " WHERE id = ? AND state = 'queued'", (error[:2000], row.id))
    if cur.rowcount == 0:
        return False
    # the path's closing step: numbered after the real attempts, result `dead`, no request was made
    conn.execute("INSERT INTO delivery_attempts (delivery_id, attempt, at, result, error, response)"
                 " VALUES (?,?,?,'dead',?,NULL)" + ATTEMPT_REPLACES,
                 (row.id, row.attempts + 1, now, error[:500]))
    add_dead_letter(conn, kind=DeadLetterKind.DELIVERY, message_id=row.message_id, error=error[:2000],
                    now=now, channel=row.channel, destination=row.destination, route_id=row.route_id,
                    dataset=row.dataset, delivery_id=row.id, attempts=row.attempts,
                    first_attempt_at=row.first_attempt_at, last_attempt_at=now)
    return True


def expire_queued(conn: Connection, *, destination: str, created_before: float,
                  held: Sequence[Pending], exclude: Collection[str], now: float, error: str,
                  limit: int = SWEEP_LIMIT, owner: str | None = None) -> tuple[int, bool]:
    """Dead-letter `held` (expired rows the worker holds in memory) and up to `limit` queued rows of
    `destination` created before `created_before` that are not in `exclude` (rows in memory or in
    flight). Answers the number dead-lettered and whether more expired rows may remain in the store."""
    done = sum(_expire(conn, row, now=now, error=error) for row in held)
    mine, param = owned(owner)  # in a cluster, only this node's rows (another node holds its own)
    rows = conn.execute(
        "SELECT seq, id, message_id, destination, route_id, dataset, channel, attempts, created_at,"
        " first_attempt_at, order_value, content_type, next_attempt_at FROM deliveries"
        f" WHERE destination = ? AND state = 'queued' AND created_at < ?{mine} ORDER BY seq LIMIT ?",
        (destination, created_before, *param, limit + len(exclude))).fetchall()
    found = [Pending(seq=r[0], id=r[1], message_id=r[2], destination=r[3], route_id=r[4], dataset=r[5],
                     channel=r[6], attempts=r[7], created_at=r[8], first_attempt_at=r[9], order_value=r[10],
                     content_type=r[11], payload=b"", next_attempt_at=r[12])
             for r in rows if r[1] not in exclude][:limit]
    done += sum(_expire(conn, row, now=now, error=error) for row in found)
    return done, len(found) >= limit
