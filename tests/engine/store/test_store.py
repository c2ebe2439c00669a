"""The durable store: group commit, duplicates, recovery of accepted-but-unprocessed messages."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.errors import StoreError
from engine.store import messages
from engine.store.base import Store
from engine.store.connection import Dialect
from engine.store.sqlite import SqliteStore
from engine.types import InboundMessage, MessageState, RouteResult

RAW = b"MSH|^~\\&|HIS|NBH|PLAT|NB|20240101120000||ADT^A01|C1|P|2.5.1\rPID|1||123\r"


def inbound(control_id: str, *, facility: str = "NBH", at: float | None = None) -> InboundMessage:
    return InboundMessage(channel="c", raw=RAW, content_type="x-application/hl7-v2+er7",
                          received_at=time.time() if at is None else at, sending_facility=facility,
                          control_id=control_id, dedupe_key=f"{facility}|{control_id}")


@pytest.fixture
async def store(new_store: Callable[[], Store]):  # type: ignore[no-untyped-def]
    """An open store of each backend (tests/conftest.py `new_store`): the contract holds on both."""
    s = new_store()
    await s.open()
    yield s
    await s.close()


async def test_concurrent_writes_are_grouped_into_few_commits_and_all_stored(store: Store) -> None:
    """500 concurrent inserts all commit, in fewer transactions than inserts (group commit)."""
    accs = await asyncio.gather(*[store.write(lambda c, i=i: messages.insert(c, inbound(f"M{i}"),
                                                                               dedupe_window=60))
                                  for i in range(500)])
    assert len({a.message_id for a in accs}) == 500
    assert store.commits < 500
    count = await store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
    assert count == 500


async def test_same_facility_and_control_id_within_window_is_a_duplicate(store: Store) -> None:
    first = await store.write(lambda c: messages.insert(c, inbound("X1"), dedupe_window=60))
    again = await store.write(lambda c: messages.insert(c, inbound("X1"), dedupe_window=60))
    other_facility = await store.write(lambda c: messages.insert(c, inbound("X1", facility="OTHER"),
                                                                 dedupe_window=60))
    assert again.duplicate and again.message_id == first.message_id
    assert not other_facility.duplicate


async def test_a_repeat_outside_the_window_is_stored_again(store: Store) -> None:
    await store.write(lambda c: messages.insert(c, inbound("OLD", at=time.time() - 120), dedupe_window=60))
    later = await store.write(lambda c: messages.insert(c, inbound("OLD"), dedupe_window=60))
    assert not later.duplicate


async def test_one_failing_op_fails_alone_and_its_batch_neighbours_commit(store: Store) -> None:
    def bad(conn):  # type: ignore[no-untyped-def]
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    good = [store.write(lambda c, i=i: messages.insert(c, inbound(f"G{i}"), dedupe_window=60))
            for i in range(20)]
    failing = store.write(bad)
    results = await asyncio.gather(*good, failing, return_exceptions=True)
    assert isinstance(results[-1], StoreError)
    assert all(not isinstance(r, BaseException) for r in results[:-1])
    count = await store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
    assert count == 20


async def test_a_full_store_refuses_the_write_with_store_error(tmp_path: Path) -> None:
    """max_size caps the database: a write past it fails (so the channel must not ACK positively)."""
    s = SqliteStore(tmp_path / "small.db", max_size=256 * 1024)
    await s.open()
    big = InboundMessage(channel="c", raw=b"x" * 400_000, content_type="t", received_at=time.time())
    with pytest.raises(StoreError, match="full"):
        await s.write(lambda c: messages.insert(c, big, dedupe_window=0))
    await s.close()


async def test_unprocessed_lists_received_messages_oldest_first(store: Store) -> None:
    a = await store.write(lambda c: messages.insert(c, inbound("A"), dedupe_window=60))
    b = await store.write(lambda c: messages.insert(c, inbound("B"), dedupe_window=60))
    await store.write(lambda c: messages.record_outcome(c, a.message_id, MessageState.MAPPED, None, []))
    rows = await store.read(lambda c: messages.unprocessed(c))
    assert [m.id for _, m in rows] == [b.message_id]
    assert rows[0][1].raw == RAW


async def test_an_ack_waits_for_a_full_sync_commit_and_redoable_work_may_use_normal(
        store: Store) -> None:
    """SQLite: synchronous is FULL (2) for any batch holding a durable write, NORMAL (1) only for
    redoable ones. PostgreSQL: synchronous_commit on / off the same way."""
    full, normal = (2, 1) if store.dialect is Dialect.SQLITE else ("on", "off")

    def mode(conn):  # type: ignore[no-untyped-def]
        if store.dialect is Dialect.SQLITE:
            return conn.execute("PRAGMA synchronous").fetchone()[0]
        return conn.execute("SHOW synchronous_commit").fetchone()[0]

    assert await store.write(mode) == full
    assert await store.write(mode, durable=False) == normal
    gate = threading.Event()
    blocker = store.write(lambda conn: gate.wait(5), durable=False)  # holds the writer ...
    queued = [store.write(mode, durable=False), store.write(mode), store.write(mode, durable=False)]
    gate.set()  # ... so these three are queued together and form the next group commit
    await blocker
    assert await asyncio.gather(*queued) == [full] * 3  # the durable op makes the whole batch FULL


async def test_a_burst_insert_answers_exactly_as_one_insert_per_message(store: Store) -> None:
    """insert_many: a repeat inside the burst or of an earlier message is a duplicate; old ones are not."""
    now = time.time()
    earlier = await store.write(lambda c: messages.insert(c, inbound("E1", at=now - 10), dedupe_window=60))
    await store.write(lambda c: messages.insert(c, inbound("OLD", at=now - 120), dedupe_window=60))
    burst = [inbound("N1", at=now), inbound("E1", at=now), inbound("N1", at=now), inbound("OLD", at=now),
             inbound("N2", at=now, facility="OTHER"), InboundMessage(
                 channel="c", raw=RAW, content_type="t", received_at=now)]  # no dedupe key
    accs = await store.write(lambda c: messages.insert_many(c, burst, dedupe_window=60))
    assert [a.duplicate for a in accs] == [False, True, True, False, False, False]
    assert accs[1].message_id == earlier.message_id and accs[2].message_id == accs[0].message_id
    count = await store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
    assert count == 2 + 4


async def test_a_burst_larger_than_one_statement_finds_duplicates_in_each(store: Store) -> None:
    """300 messages go in as several INSERT statements (256 rows, then smaller ones): repeats of stored
    messages and repeats without a control id (an HTTP idempotency key) are found in every one."""
    now = time.time()
    stored = await store.write(lambda c: messages.insert_many(
        c, [inbound("S7", at=now - 5), keyed("idem-1", at=now - 5)], dedupe_window=60))
    burst = [inbound(f"B{i}", at=now) for i in range(296)]
    burst[10] = inbound("S7", at=now)
    burst[270] = inbound("S7", at=now)  # a second repeat of the same stored one, in a later statement
    burst[290] = keyed("idem-1", at=now)
    burst[295] = keyed("idem-2", at=now)
    burst += [keyed("idem-2", at=now), inbound("B0", at=now), inbound("B0", at=now, facility="OTHER"),
              inbound("B299", at=now)]
    accs = await store.write(lambda c: messages.insert_many(c, burst, dedupe_window=60))
    dups = {i for i, a in enumerate(accs) if a.duplicate}
    assert dups == {10, 270, 290, 296, 297}
    assert accs[10].message_id == accs[270].message_id == stored[0].message_id
    assert accs[290].message_id == stored[1].message_id
    assert accs[296].message_id == accs[295].message_id and accs[297].message_id == accs[0].message_id
    count = await store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
    assert count == 2 + len(burst) - len(dups)


async def test_messages_of_a_channel_no_route_selects_are_stored_filtered_at_once(store: Store) -> None:
    now = time.time()
    accs = await store.write(lambda c: messages.insert_many(
        c, [inbound("U1", at=now), inbound("R1", at=now)], dedupe_window=60, unroutable=[True, False]))
    assert [a.processed for a in accs] == [True, False]
    states = await store.read(lambda c: c.execute(
        "SELECT control_id, state, error, processed_at IS NOT NULL FROM messages ORDER BY control_id"
    ).fetchall())
    assert states == [("R1", "received", None, 0), ("U1", "filtered", messages.NO_ROUTE, 1)]


async def test_the_writer_checkpoints_the_wal_itself_by_count_and_by_time(tmp_path: Path) -> None:
    """Autocheckpoint is off (it ran inside a COMMIT, delaying that commit's ACKs); the writer copies the
    WAL back every CHECKPOINT_EVERY_COMMITS commits, and a second after a lone commit."""
    from engine.store.sqlite import CHECKPOINT_EVERY_COMMITS, CHECKPOINT_EVERY_SECONDS

    s = SqliteStore(tmp_path / "ck.db")
    await s.open()
    try:
        for i in range(CHECKPOINT_EVERY_COMMITS):
            await s.write(lambda c, i=i: messages.insert(c, inbound(f"K{i}"), dedupe_window=60))
        await s.write(lambda c: None)  # the writer checkpoints right after settling the 32nd commit
        assert s.checkpoints == 1
        await asyncio.sleep(CHECKPOINT_EVERY_SECONDS / 2)
        assert s.checkpoints == 1  # one commit since: not yet
        await asyncio.sleep(CHECKPOINT_EVERY_SECONDS)
        assert s.checkpoints == 2
        _, wal_frames, copied = await s.read(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone())
        assert wal_frames == copied  # nothing left in the WAL that is not in the database
    finally:
        await s.close()


def keyed(key: str, *, at: float) -> InboundMessage:
    """A message deduplicated by a transport key alone (no control id), as an HTTP Idempotency-Key."""
    return InboundMessage(channel="c", raw=b"{}", content_type="application/fhir+json", received_at=at,
                          dedupe_key=key)


async def test_a_lone_one_statement_write_commits_by_itself_and_fails_alone(store: Store) -> None:
    """`one_statement=True`: run as its own transaction (no BEGIN/COMMIT); a failing one is a StoreError
    and leaves nothing behind, and the writer goes on."""
    def insert_meta(key: str) -> Callable[[sqlite3.Connection], None]:
        return lambda c: c.execute("INSERT INTO engine_meta(key, value) VALUES (?, 'v')", (key,))

    commits = store.commits
    await store.write(insert_meta("a"), one_statement=True)
    assert store.commits == commits + 1
    with pytest.raises(StoreError, match=r"(?i)unique"):
        await store.write(insert_meta("a"), one_statement=True)
    await store.write(insert_meta("b"), one_statement=True)
    keys = await store.read(lambda c: [r[0] for r in c.execute(
        "SELECT key FROM engine_meta WHERE key IN ('a', 'b') ORDER BY key")])
    assert keys == ["a", "b"]


async def test_outcomes_of_a_batch_are_recorded_once_each_and_processed_ones_are_left_alone(
        store: Store) -> None:
    """record_outcomes over 450 messages (three statements of 200): each gets its state and results;
    one already processed keeps its first outcome and is not reported as recorded."""
    now = time.time()
    accs = await store.write(lambda c: messages.insert_many(
        c, [inbound(f"O{i}", at=now) for i in range(450)], dedupe_window=60))
    ids = [a.message_id for a in accs]
    first = await store.write(lambda c: messages.record_outcome(
        c, ids[7], MessageState.FAILED, "bad PID-3", [RouteResult(route_id="r", error="bad PID-3")]))
    assert first is True
    batch = [(i, MessageState.MAPPED, None, [RouteResult(route_id="r", dataset="person", record={"n": i}),
                                            RouteResult(route_id="s", filtered="not ours")]) for i in ids]
    done = await store.write(lambda c: messages.record_outcomes(c, batch, now=now))
    assert done == set(ids) - {ids[7]}
    states = await store.read(lambda c: dict(c.execute(
        "SELECT state, count(*) FROM messages GROUP BY state")))
    assert states == {"mapped": 449, "failed": 1}
    results = await store.read(lambda c: messages.results_of(c, ids[300]))
    assert [(r["route_id"], r["record"], r["filtered"]) for r in results] == [
        ("r", {"n": ids[300]}, None), ("s", None, "not ours")]
    kept = await store.read(lambda c: messages.results_of(c, ids[7]))
    assert [(r["route_id"], r["error"]) for r in kept] == [("r", "bad PID-3")]
