"""The delivery queue's SQL: bulk enqueue answers what it queued; claims page through a backlog by key."""

from __future__ import annotations

from typing import Any

import pytest

from engine.delivery import outbox

pytestmark = pytest.mark.both_backends


def new(n: int, destination: str = "d") -> list[outbox.NewDelivery]:
    return [outbox.NewDelivery(message_id=f"m{i}", destination=destination, route_id="r", dataset="person",
                              channel="c", payload=b'{"n":%d}' % i, content_type="application/json",
                              order_value=None) for i in range(n)]


def test_enqueue_many_answers_each_new_row_once_and_leaves_queued_or_sent_rows_alone(
        raw_connection: Any) -> None:
    conn = raw_connection
    first = outbox.enqueue_many(conn, new(1200), now=10.0)  # more than one multi-row chunk
    assert [p.message_id for p in first] == [f"m{i}" for i in range(1200)]
    assert all(p.payload == b'{"n":%d}' % i and p.attempts == 0 for i, p in enumerate(first))
    assert outbox.enqueue_many(conn, new(1200), now=11.0) == []  # a second recording creates nothing
    conn.execute("UPDATE deliveries SET state = 'dead' WHERE message_id = 'm7'")
    [again] = outbox.enqueue_many(conn, new(10), now=12.0)  # replay with remap re-queues a dead row
    assert again.message_id == "m7" and again.id == first[7].id


def test_a_sweep_pages_through_the_backlog_by_key_and_sees_every_due_row_once(raw_connection: Any) -> None:
    conn = raw_connection
    outbox.enqueue_many(conn, new(1000), now=10.0)
    outbox.enqueue_many(conn, new(5, destination="other"), now=10.0)
    held = {p.id for p in outbox.claim_due(conn, "d", now=20.0, limit=3, exclude=())[0]}
    seen: list[str] = []
    rows, _, cursor = outbox.claim_due(conn, "d", now=20.0, limit=300, exclude=held)
    seen += [p.id for p in rows]
    pages = 1
    while cursor is not None:
        rows, _, cursor = outbox.claim_due(conn, "d", now=20.0, limit=300, exclude=held, after=cursor)
        seen += [p.id for p in rows if p.id not in held]
        pages += 1
    assert len(seen) == len(set(seen)) == 997 and not held & set(seen) and pages == 4


def test_mark_sent_many_logs_one_attempt_per_delivery_and_keeps_each_response(raw_connection: Any) -> None:
    conn = raw_connection
    rows = outbox.enqueue_many(conn, new(3), now=10.0)
    outbox.mark_sent_many(conn, [(rows[0].id, 1, "HTTP 201: a"), (rows[1].id, 3, "HTTP 200: b")], now=11.0)
    got = conn.execute("SELECT message_id, state, attempts, last_response FROM deliveries ORDER BY seq")
    assert got.fetchall() == [("m0", "sent", 1, "HTTP 201: a"), ("m1", "sent", 3, "HTTP 200: b"),
                              ("m2", "queued", 0, None)]
    log = conn.execute("SELECT attempt, result, response FROM delivery_attempts ORDER BY attempt").fetchall()
    assert log == [(1, "sent", "HTTP 201: a"), (3, "sent", "HTTP 200: b")]
