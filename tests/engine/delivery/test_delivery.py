"""Delivery queue behaviour: rows written with the outcome, poison messages, FIFO order, dead letters."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import delivery_support as S
import orjson
import pytest

from channels.stub import StubOutbound
from engine.config import Config
from engine.runtime import Engine
from engine.types import HL7V2

pytestmark = pytest.mark.both_backends


def http_config(url: str, options: str) -> str:
    return f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: platform
    type: http
    {options}
    http: {{url: "{url}/r"}}
"""


STUB = """
engine:
  store: {path: var/e.db}
  admin: {enabled: false}
destinations:
  - name: %s
    type: stub
    keys: %s
"""


async def test_a_poison_message_in_parallel_mode_does_not_hold_back_the_100_behind_it(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(fail_body={b"poison": -1}).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "retry: {initial_delay: 0.2, max_attempts: 1000}")))
        [poison] = await S.inject(engine, records=[{"patient_id": "poison"}], destinations=("platform",))
        ids = await S.inject(engine, records=[{"patient_id": f"p{i}"} for i in range(100)],
                             destinations=("platform",))
        await S.wait_for(lambda: len(sink.accepted) == 100)
        assert {r.message_id for r in sink.accepted} == set(ids)
        [(state, attempts)] = await S.rows(
            engine, "SELECT state, attempts FROM deliveries WHERE message_id = ?", poison)
        assert state == "queued" and 1 <= attempts <= 3  # still retrying, on its own schedule
    finally:
        await sink.stop()


async def test_fifo_keeps_the_order_of_200_messages_through_a_five_failure_outage(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(script=[503] * 5).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "ordering: fifo\n    retry: {initial_delay: 0.02, jitter: 0}")))
        ids = await S.inject(engine, records=[{"n": i} for i in range(200)], destinations=("platform",))
        await S.wait_for(lambda: len(sink.accepted) == 200)
        assert [orjson.loads(r.body)["n"] for r in sink.accepted] == list(range(200))
        assert [r.message_id for r in sink.accepted] == ids
        assert len(sink.requests) == 205
    finally:
        await sink.stop()


async def test_a_blocked_fifo_head_shows_in_status_and_holds_only_its_own_key(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(fail_body={b'"A"': -1}).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "ordering: fifo\n    order_key: patient_id\n"
                      "    retry: {initial_delay: 0.05, max_attempts: 1000}")))
        a_records = [{"patient_id": "A", "n": 1}, {"patient_id": "A", "n": 2}]
        [head, _a2] = await S.inject(engine, records=a_records, destinations=("platform",))
        b_ids = await S.inject(engine, records=[{"patient_id": "B", "n": i} for i in range(5)],
                               destinations=("platform",))
        await S.wait_for(lambda: len(sink.accepted) == 5)
        assert [r.message_id for r in sink.accepted] == b_ids
        engine.delivery.refresh_soon()
        [dest] = await S.wait_for(lambda: [d for d in engine.delivery.status()
                                           if d["state"] in ("blocked", "down") and d["queued"] == 2])
        assert dest["blocked_message_id"] == head
        sink.fail_body.clear()
        await S.wait_for(lambda: len(sink.accepted) == 7)
        assert [orjson.loads(r.body)["n"] for r in sink.accepted[5:]] == [1, 2]
    finally:
        await sink.stop()


async def test_a_route_error_becomes_a_mapping_dead_letter_in_the_same_transaction(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(STUB % ("out", "field")))
    [mid] = await S.inject(engine, error="PID-7: bad date '2024-13-01'", destinations=("out",))
    [row] = await S.rows(engine, "SELECT kind, message_id, route_id, error FROM dead_letters")
    assert row == ("mapping", mid, "test_route", "PID-7: bad date '2024-13-01'")
    assert await S.rows(engine, "SELECT count(*) FROM deliveries") == [(0,)]


async def test_an_unknown_destination_name_is_a_dead_letter_with_a_clear_reason(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(STUB % ("out", "field")))
    await S.inject(engine, records=[{"x": 1}], destinations=("out", "nowhere"))
    [(kind, dest, error)] = await S.rows(engine, "SELECT kind, destination, error FROM dead_letters")
    assert (kind, dest) == ("mapping", "nowhere") and "unknown destination 'nowhere'" in error
    await S.wait_for(lambda: StubOutbound.received.get("out"))


async def test_pass_through_routes_deliver_the_original_message_bytes(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(STUB % ("pt_out", "field")))
    raw = b"MSH|^~\\&|LIS|NBH|||20240101||ADT^A01|PT1|P|2.5.1\rPID|1||9^^^^PI\r"
    await S.inject(engine, raw=raw, passthrough=True, destinations=("pt_out",))
    [item] = await S.wait_for(lambda: StubOutbound.received.get("pt_out"))
    assert item.payload == raw and item.content_type == HL7V2


async def test_a_destination_with_keys_de_gets_records_keyed_by_data_element_id(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(STUB % ("de_out", "de")))
    await S.inject(engine, records=[{"patient_id": "42", "name": "x"}], destinations=("de_out",))
    [item] = await S.wait_for(lambda: StubOutbound.received.get("de_out"))
    assert orjson.loads(item.payload) == {"local:patient_id": "42", "DE02.01.039.00": "x"}


async def test_recording_the_same_outcome_twice_creates_one_delivery(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    from engine.store import messages
    from engine.types import RouteResult

    engine: Engine = await engine_factory(make_config(STUB % ("once", "field")))
    [mid] = await S.inject(engine, records=[{"x": 1}], destinations=("once",))
    msg = await engine.store.read(lambda c: messages.get(c, mid))
    result = RouteResult(route_id="test_route", dataset="person", record={"x": 1}, destinations=("once",))
    wake = await engine.store.write(lambda c: engine.delivery.record(c, msg, [result], time.time()))
    assert wake == set()
    assert await S.rows(engine, "SELECT count(*) FROM deliveries") == [(1,)]


async def test_a_permanently_failing_destination_dead_letters_and_status_counts_it(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    text = STUB % ("perm", "field") + "    stub: {fail: permanent}\n"
    engine: Engine = await engine_factory(make_config(text))
    await S.inject(engine, records=[{"x": 1}, {"x": 2}], destinations=("perm",))
    await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM dead_letters HAVING count(*) = 2"))
    engine.delivery.refresh_soon()
    [st] = await S.wait_for(lambda: [d for d in engine.delivery.status() if d["dead"] == 2])
    assert st["queued"] == 0 and st["dead_letters"] == 2 and "permanently" in st["last_error"]["text"]


async def test_retention_prunes_sent_payloads_and_raw_messages_but_never_dead_letters(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(STUB % ("keep", "field")))
    await S.inject(engine, records=[{"x": 1}], destinations=("keep",))
    await S.inject(engine, error="bad", destinations=())
    await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM deliveries WHERE state = 'sent'"))
    payloads, raws = await engine.delivery.prune(now=time.time() + 31 * 86400)
    assert payloads == 1 and raws == 1  # the failed message keeps its raw bytes for a remap
    assert await S.rows(engine, "SELECT payload FROM deliveries") == [(None,)]
    assert await S.rows(engine, "SELECT count(*) FROM dead_letters") == [(1,)]


async def test_a_down_destination_only_probes_and_stops_reading_its_backlog_until_it_recovers(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """While `down`, one row at a time is sent as a probe; claiming pages of rows that cannot be sent
    would only keep the store writer from ingest. After the recovery every row is delivered."""
    sink = await S.Sink(script=[503] * 12).start()
    try:
        engine: Engine = await engine_factory(make_config(http_config(
            sink.url, "retry: {initial_delay: 0.05, max_delay: 0.2, jitter: 0, max_attempts: 1000}")))
        ids = await S.inject(engine, records=[{"n": i} for i in range(300)], destinations=("platform",))
        worker = engine.delivery.workers["platform"]
        await S.wait_for(lambda: worker.state == "down")
        claims, probes = worker.claims, len(sink.requests)
        await S.wait_for(lambda: len(sink.requests) >= probes + 3)  # ~0.6 s of probing
        if worker.state == "down":
            assert worker.claims == claims
        await S.wait_for(lambda: len(sink.accepted) == 300)
        assert {r.message_id for r in sink.accepted} == set(ids)
        assert worker.state == "ok"
    finally:
        await sink.stop()
