"""Batched HTTP delivery (`http.batch`): JSON arrays, one outcome per record, poison isolation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import delivery_support as S
import orjson
import pytest

from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends


def batch_config(url: str, *, max_records: int = 100, retry: str = "{initial_delay: 0.05, jitter: 0}") -> str:
    return f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: platform
    type: http
    concurrency: 2
    retry: {retry}
    http: {{url: "{url}/r", batch: {{max_records: {max_records}, max_wait: 20ms}}}}
"""


async def test_a_batch_destination_posts_json_arrays_and_records_every_delivery_once(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink().start()
    try:
        engine: Engine = await engine_factory(make_config(batch_config(sink.url, max_records=50)))
        await S.inject(engine, records=[{"n": i} for i in range(230)], destinations=("platform",))
        await S.wait_for(lambda: sum(len(r.delivery_ids) for r in sink.accepted) == 230)
        assert len(sink.requests) < 230 and all(len(r.delivery_ids) <= 50 for r in sink.requests)
        for r in sink.requests:  # the array and the id header line up, record for record
            assert isinstance(orjson.loads(r.body), list) and len(orjson.loads(r.body)) == len(r.delivery_ids)
        assert sorted(x["n"] for r in sink.requests for x in orjson.loads(r.body)) == list(range(230))
        ids = [i for r in sink.requests for i in r.delivery_ids]
        assert len(set(ids)) == 230
        await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'sent'"
                                        " HAVING count(*) = 230"))
        log = await S.rows(engine, "SELECT delivery_id, attempt, result FROM delivery_attempts")
        assert sorted(d for d, _, _ in log) == sorted(ids)
        assert {(a, res) for _, a, res in log} == {(1, "sent")}
    finally:
        await sink.stop()


async def test_a_refused_batch_is_split_so_only_the_poison_record_is_dead_lettered(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(refuse_body={b'"poison"'}).start()
    try:
        engine: Engine = await engine_factory(make_config(batch_config(sink.url)))
        records: list[dict[str, Any]] = [{"n": i} for i in range(40)]
        records.insert(17, {"n": "poison"})
        await S.inject(engine, records=records, destinations=("platform",))
        await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM deliveries WHERE state = 'dead'"))
        await S.wait_for(lambda: sum(len(r.delivery_ids) for r in sink.accepted) == 40)
        delivered = [x["n"] for r in sink.accepted for x in orjson.loads(r.body)]
        assert sorted(delivered) == list(range(40))
        [(kind, error)] = await S.rows(engine, "SELECT kind, error FROM dead_letters")
        assert kind == "delivery" and "HTTP 400" in error and "rejected: field x is bad" in error
        [(dead_id,)] = await S.rows(engine, "SELECT id FROM deliveries WHERE state = 'dead'")
        path = await S.rows(engine, "SELECT attempt, result FROM delivery_attempts WHERE delivery_id = ?"
                                    " ORDER BY attempt", dead_id)
        assert path == [(1, "split"), (2, "dead")]
        # every neighbour was refused once with the batch, then sent on its own
        attempts: dict[str, list[str]] = {}
        for delivery_id, result in await S.rows(engine, "SELECT delivery_id, result FROM delivery_attempts"
                                                        " WHERE delivery_id != ? ORDER BY attempt", dead_id):
            attempts.setdefault(delivery_id, []).append(result)
        assert {">".join(p) for p in attempts.values()} <= {"split>sent", "sent"} and len(attempts) == 40
    finally:
        await sink.stop()


async def test_a_batch_refused_with_503_is_retried_for_each_record_and_then_delivered(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(script=[503, 503], retry_after="0").start()
    try:
        engine: Engine = await engine_factory(make_config(batch_config(sink.url)))
        await S.inject(engine, records=[{"n": i} for i in range(10)], destinations=("platform",))
        await S.wait_for(lambda: sum(len(r.delivery_ids) for r in sink.accepted) == 10)
        await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'sent'"
                                        " HAVING count(*) = 10"))
        assert {len(set(r.delivery_ids)) for r in sink.requests} <= set(range(1, 11))
        counts = await S.rows(engine, "SELECT attempts, count(*) FROM deliveries GROUP BY attempts")
        assert sum(n for _, n in counts) == 10 and all(a >= 2 for a, _ in counts)
        results = await S.rows(engine, "SELECT DISTINCT result FROM delivery_attempts")
        assert {r for (r,) in results} == {"retry", "sent"}
    finally:
        await sink.stop()


async def test_a_pass_through_message_cannot_join_a_json_batch_and_is_dead_lettered_alone(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink().start()
    try:
        engine: Engine = await engine_factory(make_config(batch_config(sink.url)))
        await S.inject(engine, passthrough=True, destinations=("platform",))
        await S.inject(engine, records=[{"n": 1}], destinations=("platform",))
        await S.wait_for(lambda: S.rows(engine, "SELECT 1 FROM deliveries WHERE state = 'dead'"))
        await S.wait_for(lambda: sink.accepted)
        [(error,)] = await S.rows(engine, "SELECT error FROM dead_letters")
        assert "not a JSON record" in error
        assert [orjson.loads(r.body) for r in sink.accepted] == [[{"n": 1}]]
    finally:
        await sink.stop()
