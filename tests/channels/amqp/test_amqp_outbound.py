"""AMQP destination against the private RabbitMQ: confirmed, persistent publishes; returns are retried."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import delivery_support as S
import orjson
import pytest

from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.broker




def config(url: str, exchange: str, key: str) -> str:
    return f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: bus
    type: amqp
    retry: {{initial_delay: 0.05, max_delay: 0.1, max_attempts: 1000}}
    amqp: {{url: "{url}", exchange: {exchange}, routing_key: "{key}", declare: {{type: topic}}}}
"""


async def test_records_are_published_persistent_with_the_delivery_id_and_confirmed(
        rabbitmq: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    exchange, queue_name = f"yl-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    conn = await aio_pika.connect(rabbitmq.url)
    try:
        ch = await conn.channel()
        ex = await ch.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        q = await ch.declare_queue(queue_name, durable=True)
        await q.bind(ex, "ningbo.#")
        engine: Engine = await engine_factory(make_config(config(rabbitmq.url, exchange, "ningbo.{dataset}")))
        ids = await S.inject(engine, records=[{"n": 1}, {"n": 2}], destinations=("bus",), dataset="person")
        await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'sent'"
                                                " HAVING count(*) = 2"))
        delivery_ids = dict(await S.rows(engine, "SELECT message_id, id FROM deliveries"))
        got = []
        for _ in range(2):
            msg = await q.get(timeout=5)
            await msg.ack()
            got.append(msg)
        assert sorted(orjson.loads(m.body)["n"] for m in got) == [1, 2]
        assert all(m.delivery_mode == aio_pika.DeliveryMode.PERSISTENT for m in got)
        assert all(m.routing_key == "ningbo.person" for m in got)
        assert {m.message_id for m in got} == {delivery_ids[i] for i in ids}
    finally:
        await conn.close()


async def test_an_unroutable_publish_is_returned_and_retried_not_lost(
        rabbitmq: Any, make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    exchange = f"yl-{uuid.uuid4().hex[:8]}"
    engine: Engine = await engine_factory(make_config(config(rabbitmq.url, exchange, "nobody.listens")))
    await S.inject(engine, records=[{"n": 1}], destinations=("bus",))
    [dest] = await S.wait_for(lambda: [d for d in engine.delivery.status() if d["state"] == "down"],
                              timeout=30)
    assert "returned" in dest["last_error"]["text"]
    [(state, attempts)] = await S.rows(engine, "SELECT state, attempts FROM deliveries")
    assert state == "queued" and attempts >= 3
