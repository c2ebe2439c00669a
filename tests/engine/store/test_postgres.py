"""What only the PostgreSQL store has: several stores (nodes) on one database, a server that goes away
and comes back, the SQL adapter. The contract both backends share is in test_store.py / test_ingest.py."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from engine.errors import StoreError, StoreUnavailable
from engine.store import messages, migrations
from engine.store.connection import Dialect
from engine.store.pg_connection import translate
from engine.store.postgres import RECONNECT_FIRST, RECONNECT_MAX, PostgresStore, reconnect_delay
from engine.types import InboundMessage

pytestmark = pytest.mark.postgres

RAW = b"MSH|^~\\&|HIS|NBH|PLAT|NB|20240101120000||ADT^A01|C1|P|2.5.1\rPID|1||123\r"


def inbound(control_id: str, *, content: bytes = RAW, at: float | None = None) -> InboundMessage:
    return InboundMessage(channel="c", raw=content, content_type="x-application/hl7-v2+er7",
                          received_at=time.time() if at is None else at, sending_facility="NBH",
                          control_id=control_id, dedupe_key=f"NBH|{control_id}",
                          content_hash=str(hash(content)))


def test_room_sql_is_translated_outside_string_literals_only() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE 'x?%' AND d = '%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x?%%' AND d = '%%'")
    assert translate("SELECT instr(lower(error), lower(?)) > 0 FROM t WHERE k IS ? AND j IS NOT ?") == (
        "SELECT strpos(lower(error), lower(%s)) > 0 FROM t WHERE k IS NOT DISTINCT FROM %s"
        " AND j IS DISTINCT FROM %s")
    assert translate("SELECT 1 WHERE x IS NULL AND 5 % 2 = 1") == "SELECT 1 WHERE x IS NULL AND 5 %% 2 = 1"


def test_reconnect_waits_double_from_the_first_delay_up_to_the_cap() -> None:
    rng = random.Random(7)
    assert reconnect_delay(0) == 0.0
    assert RECONNECT_FIRST * 0.8 <= reconnect_delay(1, rng) <= RECONNECT_FIRST * 1.2
    assert RECONNECT_FIRST * 1.6 <= reconnect_delay(2, rng) <= RECONNECT_FIRST * 2.4
    assert all(reconnect_delay(n, rng) <= RECONNECT_MAX for n in (10, 100, 10_000))
    assert reconnect_delay(100, rng) >= RECONNECT_MAX * 0.8


async def test_two_nodes_storing_the_same_retry_at_once_store_it_once(pg_dsn: str) -> None:
    """The duplicate check is a constraint: two stores (two engine nodes) inserting the same message 20
    times each, interleaved, store one row; every other answer is a duplicate naming that row."""
    nodes = [PostgresStore(pg_dsn), PostgresStore(pg_dsn)]
    for node in nodes:
        await node.open()
    try:
        now = time.time()
        writes = [node.write(lambda c: messages.insert_many(c, [inbound("SAME", at=now)], dedupe_window=60))
                  for _ in range(20) for node in nodes]
        answers = [acc[0] for acc in await asyncio.gather(*writes)]
        stored = await nodes[0].read(lambda c: c.execute(
            "SELECT id FROM messages WHERE control_id = 'SAME'").fetchall())
    finally:
        for node in nodes:
            await node.close()
    assert len(stored) == 1
    assert sum(not a.duplicate for a in answers) == 1
    assert {a.message_id for a in answers} == {stored[0][0]}


async def test_a_reused_control_id_with_other_content_is_stored_and_flagged(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        first = await store.write(lambda c: messages.insert_many(c, [inbound("R1")], dedupe_window=60))
        other = await store.write(lambda c: messages.insert_many(
            c, [inbound("R1", content=RAW + b"OBX|1\r")], dedupe_window=60))
        meta = await store.read(lambda c: c.execute(
            "SELECT metadata FROM messages WHERE id = ?", (other[0].message_id,)).fetchone()[0])
    finally:
        await store.close()
    assert not other[0].duplicate and other[0].reused
    assert messages.REUSED in meta and first[0].message_id in meta


async def test_several_nodes_starting_at_once_apply_each_migration_once(pg_dsn: str) -> None:
    nodes = [PostgresStore(pg_dsn) for _ in range(3)]
    await asyncio.gather(*(n.open() for n in nodes))
    try:
        rows = await nodes[0].read(lambda c: c.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version").fetchall())
    finally:
        for node in nodes:
            await node.close()
    assert [tuple(r) for r in rows] == [(m.version, m.name) for m in migrations.migrations(Dialect.POSTGRES)]


async def test_with_postgresql_stopped_writes_fail_as_unavailable_then_recover_by_themselves(
        postgres_server: Any, pg_dsn: str) -> None:
    """A stopped server fails each write at once with StoreUnavailable (a StoreError: no positive ACK),
    and /readyz says not writable; once it is back the store reconnects by itself, and what was committed
    before is all there."""
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        before = await store.write(lambda c: messages.insert_many(c, [inbound("B1")], dedupe_window=60))
        await store.write(lambda c: None)  # the writer reads the size after the first commit, before this
        assert store.describe()["size_bytes"] > 0  # /status and the console show the database size
        postgres_server.stop()
        try:
            started = time.monotonic()
            for n in range(3):
                with pytest.raises(StoreUnavailable):
                    await store.write(lambda c, n=n: messages.insert_many(c, [inbound(f"D{n}")],
                                                                          dedupe_window=60))
            assert time.monotonic() - started < 10  # refused promptly, never a hang
            assert not await store.check_writable()
            assert store.describe()["available"] is False
            with pytest.raises(StoreError):
                await store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone())
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while not await store.check_writable():
            assert time.monotonic() < deadline, "the store did not reconnect"
            await asyncio.sleep(0.1)
        after = await store.write(lambda c: messages.insert_many(c, [inbound("A1")], dedupe_window=60))
        ids = await store.read(lambda c: [r[0] for r in c.execute("SELECT id FROM messages ORDER BY seq")])
        assert ids == [before[0].message_id, after[0].message_id]
        assert store.describe()["available"] is True and store.reconnects >= 1
    finally:
        await store.close()


async def test_a_nul_in_a_header_field_is_stored_and_the_raw_message_kept_exactly(pg_dsn: str) -> None:
    """PostgreSQL text cannot hold NUL: a message whose MSH-4 and MSH-10 carry one (hostile input) is
    stored all the same (not a commit that fails on every retry), header NULs as U+FFFD, raw bytes intact."""
    raw = RAW.replace(b"|NBH|", b"|N\x00B|", 1)
    msg = InboundMessage(channel="c", raw=raw, content_type="x-application/hl7-v2+er7",
                         received_at=time.time(), sending_facility="N\x00B", control_id="C\x001",
                         dedupe_key="N\x00B|C\x001")
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        [acc] = await store.write(lambda c: messages.insert_many(c, [msg], dedupe_window=60))
        again = await store.write(lambda c: messages.insert_many(c, [msg], dedupe_window=60))
        stored = await store.read(lambda c: messages.get(c, acc.message_id))
    finally:
        await store.close()
    assert again[0].duplicate and again[0].message_id == acc.message_id
    assert stored is not None and stored.raw == raw
    assert (stored.sending_facility, stored.control_id) == ("N\ufffdB", "C\ufffd1")


def test_the_postgresql_insert_path_shares_the_sqlite_paths_constants() -> None:
    """pg_inserts cannot import inserts (inserts imports it): its copies must not drift."""
    from engine.store import inserts, pg_inserts

    assert (pg_inserts.KEY_SEP, pg_inserts.REUSED) == (inserts.KEY_SEP, inserts.REUSED)
    assert pg_inserts.MAX_ROWS == inserts._CHUNKS[0]


async def test_a_store_opened_while_postgresql_is_down_waits_for_it(postgres_server: Any,
                                                                   pg_dsn: str) -> None:
    """A node starting before the database (or during a failover) waits for it, within `open_wait`."""
    postgres_server.stop()
    store = PostgresStore(pg_dsn, open_wait=30)
    try:
        opening = asyncio.create_task(store.open())
        await asyncio.sleep(1.0)
        assert not opening.done()
    finally:
        postgres_server.start()
    await asyncio.wait_for(opening, 30)
    try:
        [acc] = await store.write(lambda c: messages.insert_many(c, [inbound("W1")], dedupe_window=60))
        assert not acc.duplicate
    finally:
        await store.close()


async def test_a_store_that_cannot_reach_postgresql_in_time_fails_to_open_as_unavailable(
        postgres_server: Any) -> None:
    dead = postgres_server.dsn("postgres").replace(f":{postgres_server.port}/", ":1/")  # nothing listens
    with pytest.raises(StoreUnavailable, match="cannot open store"):
        await PostgresStore(dead, open_wait=0.5).open()
