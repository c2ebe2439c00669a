"""The AMQP inbound channel against the private RabbitMQ of tests/support/broker.py (no system broker)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest

from engine.runtime import Engine
from engine.types import ChannelState

pytestmark = pytest.mark.broker

# HL7 v2.5.1 ORU^R01 header shape (§7.3.1); the body is irrelevant to the channel.
ORU = ("MSH|^~\\&|LIS|NBH|YONGLINK|NB|20240101120000||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
       "PID|1||{cid}^^^NBH^MR\rOBR|1\rOBX|1|NM|718-7^Hemoglobin^LN||130|g/L\r")

CONFIG = """
engine:
  store: {{path: var/e.db}}
  admin: {{listen: "127.0.0.1:0"}}
channels:
  - name: mq
    type: amqp
    amqp:
      url: "{url}"
      queue: {queue}
      declare: true
      prefetch: 200
      reconnect: {{initial_delay: 0.1s, max_delay: 1s}}
{extra}
"""


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit: float = 60.0) -> None:
    """Poll `check` until it holds (a deadline for progress, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {limit}s: {what}")
        await asyncio.sleep(0.05)


async def publish(url: str, queue: str, bodies: list[tuple[bytes, str | None, str | None]]) -> None:
    """Publish persistent messages with publisher confirms: (body, content_type, message_id)."""
    async with await aio_pika.connect(url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        for start in range(0, len(bodies), 500):
            await asyncio.gather(*(
                channel.default_exchange.publish(
                    aio_pika.Message(body, content_type=ctype, message_id=mid,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue)
                for body, ctype, mid in bodies[start:start + 500]))


async def queue_depth(url: str, queue: str) -> int:
    async with await aio_pika.connect(url) as conn:
        q = await (await conn.channel()).get_queue(queue, ensure=True)
        return int(q.declaration_result.message_count or 0)


async def rows(engine: Engine) -> list[tuple[str, str | None]]:
    return await engine.store.read(
        lambda c: c.execute("SELECT state, control_id FROM messages ORDER BY seq").fetchall())


async def readyz(engine: Engine) -> tuple[int, bool]:
    """`GET /readyz` of the admin API: (status, whether the body names the reconnecting channel)."""
    async with aiohttp.ClientSession() as http, http.get(f"{engine.admin.url}/readyz") as resp:
        return resp.status, "reconnecting" in await resp.text()


async def start_engine(make_config: Any, engine_factory: Any, rabbitmq: Any, extra: str = "",
                       queue: str | None = None) -> tuple[Engine, str]:
    queue = queue or f"hl7-in-{uuid.uuid4().hex[:8]}"
    engine: Engine = await engine_factory(make_config(CONFIG.format(url=rabbitmq.url, queue=queue,
                                                                    extra=extra)))
    assert engine.channels["mq"].state is ChannelState.STARTED, engine.channels["mq"].stats.last_error
    return engine, queue


async def test_five_thousand_confirmed_messages_are_each_stored_once_and_acked(
        make_config: Any, engine_factory: Any, rabbitmq: Any) -> None:
    engine, queue = await start_engine(make_config, engine_factory, rabbitmq)
    n = 5000
    await publish(rabbitmq.url, queue, [(ORU.format(cid=f"M{i}").encode(), "x-application/hl7-v2+er7",
                                         f"id-{i}") for i in range(n)])

    async def all_stored() -> bool:
        return len(await rows(engine)) >= n

    await eventually(all_stored, what=f"{n} messages stored")
    [channel] = engine.status()["channels"]
    assert channel["type"] == "amqp" and channel["queue"] == queue and "guest" not in channel["broker"]
    await engine.control("mq", "stop")  # unacked deliveries would go back to the queue now
    stored = await rows(engine)
    assert len(stored) == n and len({cid for _, cid in stored}) == n
    assert await queue_depth(rabbitmq.url, queue) == 0
    rt = engine.channels["mq"]
    assert rt.stats.counts["received"] == n and rt.stats.counts["duplicate"] == 0
    text = engine.metrics.render().decode()
    assert f'yonglink_messages_total{{channel="mq",outcome="received"}} {float(n)}' in text
    assert f'yonglink_ack_latency_seconds_count{{channel="mq"}} {float(n)}' in text


async def test_a_poison_payload_is_stored_rejected_and_acked_by_default(
        make_config: Any, engine_factory: Any, rabbitmq: Any) -> None:
    engine, queue = await start_engine(make_config, engine_factory, rabbitmq)
    await publish(rabbitmq.url, queue, [(b"\x00\x01 not hl7", None, "poison-1"),
                                        (ORU.format(cid="OK1").encode(), None, None),
                                        (b'{"resourceType": "Patient", "birthDate": 1}',
                                         "application/fhir+json", None)])

    async def three_stored() -> bool:
        return len(await rows(engine)) == 3

    await eventually(three_stored, what="poison, good and bad FHIR stored")
    await engine.control("mq", "stop")
    states = sorted(state if state == "rejected" else "accepted" for state, _ in await rows(engine))
    assert states == ["accepted", "rejected", "rejected"]
    assert await queue_depth(rabbitmq.url, queue) == 0
    assert engine.channels["mq"].stats.counts["rejected"] == 2


async def test_a_poison_payload_goes_to_the_dead_letter_exchange_with_on_reject_dead_letter(
        make_config: Any, engine_factory: Any, rabbitmq: Any) -> None:
    dlq = f"hl7-dead-{uuid.uuid4().hex[:8]}"
    extra = (f"      on_reject: dead_letter\n      dead_letter_exchange: {dlq}.dlx\n"
             f"      dead_letter_queue: {dlq}\n")
    engine, queue = await start_engine(make_config, engine_factory, rabbitmq, extra=extra)
    await publish(rabbitmq.url, queue, [(b"garbage", "text/plain", "poison-2"),
                                        (ORU.format(cid="OK2").encode(), "text/plain", None)])

    async def dead_lettered() -> bool:
        return await queue_depth(rabbitmq.url, dlq) == 1 and len(await rows(engine)) == 1

    await eventually(dead_lettered, what="poison in the DLQ, good message stored")
    assert [cid for _, cid in await rows(engine)] == ["OK2"]
    assert engine.channels["mq"].stats.counts["rejected"] == 1
    async with await aio_pika.connect(rabbitmq.url) as conn:
        q = await (await conn.channel()).get_queue(dlq, ensure=True)
        dead = await q.get(timeout=5)
        assert dead is not None and dead.body == b"garbage" and dead.message_id == "poison-2"
        await dead.ack()


async def test_a_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
        make_config: Any, engine_factory: Any, rabbitmq: Any) -> None:
    engine, queue = await start_engine(make_config, engine_factory, rabbitmq)
    rt = engine.channels["mq"]
    first, second = 3000, 1000
    await publish(rabbitmq.url, queue, [(ORU.format(cid=f"R{i}").encode(), None, f"r-{i}")
                                        for i in range(first)])

    async def some_stored() -> bool:
        return len(await rows(engine)) > 0

    await eventually(some_stored, what="consumption started")
    seen: set[str] = set()
    try:
        await asyncio.to_thread(rabbitmq.stop)

        async def reconnecting() -> bool:
            seen.add(rt.state.value)
            return rt.state is ChannelState.RECONNECTING

        await eventually(reconnecting, what="channel shows reconnecting")
        assert [c["state"] for c in engine.status()["channels"]] == ["reconnecting"]
        assert await readyz(engine) == (503, True)
    finally:
        if not rabbitmq.running:
            await asyncio.to_thread(rabbitmq.start)

    async def started() -> bool:
        return rt.state is ChannelState.STARTED

    await eventually(started, what="channel back to started")
    assert (await readyz(engine))[0] == 200
    await publish(rabbitmq.url, queue, [(ORU.format(cid=f"R{i}").encode(), None, f"r-{i}")
                                        for i in range(first, first + second)])

    async def all_stored() -> bool:
        return len(await rows(engine)) >= first + second

    await eventually(all_stored, what="every message stored after the restart")
    await engine.control("mq", "stop")
    stored = await rows(engine)
    assert len(stored) == first + second and len({cid for _, cid in stored}) == first + second
    assert await queue_depth(rabbitmq.url, queue) == 0
    assert "reconnecting" in seen and rt.stats.counts["received"] == first + second


async def test_fhir_payloads_are_chosen_by_content_type_and_deduplicated_by_message_id(
        make_config: Any, engine_factory: Any, rabbitmq: Any) -> None:
    engine, queue = await start_engine(make_config, engine_factory, rabbitmq)
    patient = orjson.dumps({"resourceType": "Patient", "id": "p1", "gender": "male"})
    await publish(rabbitmq.url, queue, [(patient, "application/fhir+json", "same"),
                                        (patient, "application/fhir+json", "same")])

    async def both_seen() -> bool:
        counts = engine.channels["mq"].stats.counts
        return counts["received"] + counts["duplicate"] == 2

    await eventually(both_seen, what="both deliveries handled")
    assert len(await rows(engine)) == 1 and engine.channels["mq"].stats.counts["duplicate"] == 1


async def test_a_store_failure_nacks_with_requeue_and_the_message_is_stored_once_the_store_recovers(
        make_config: Any, engine_factory: Any, rabbitmq: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import StoreError

    engine, queue = await start_engine(make_config, engine_factory, rabbitmq)
    rt = engine.channels["mq"]
    real_write = engine.store.write
    failures = 0

    def failing_write(op: Any, **_: Any) -> Any:
        nonlocal failures
        failures += 1
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(StoreError("disk full (simulated)"))
        return fut

    monkeypatch.setattr(engine.store, "write", failing_write)
    await publish(rabbitmq.url, queue, [(ORU.format(cid="SF1").encode(), None, "sf-1")])

    async def failed_twice() -> bool:
        return failures >= 2  # the first nack(requeue=True) came back as a redelivery

    await eventually(failed_twice, what="delivery redelivered after a store failure")
    assert rt.stats.last_error is not None and "store failed" in rt.stats.last_error
    assert await rows(engine) == []
    monkeypatch.setattr(engine.store, "write", real_write)

    async def stored() -> bool:
        return len(await rows(engine)) == 1

    await eventually(stored, what="stored after the store recovered")
    await engine.control("mq", "stop")
    assert [cid for _, cid in await rows(engine)] == ["SF1"]
    assert await queue_depth(rabbitmq.url, queue) == 0


async def test_a_channel_started_while_the_broker_is_unreachable_shows_reconnecting_and_stops_cleanly(
        make_config: Any, engine_factory: Any) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"amqp://guest:secret@127.0.0.1:{port}/"
    engine: Engine = await engine_factory(make_config(CONFIG.format(url=url, queue="q", extra="")))
    rt = engine.channels["mq"]

    async def reconnecting() -> bool:
        return rt.state is ChannelState.RECONNECTING

    await eventually(reconnecting, what="reconnecting while the broker is unreachable")
    [channel] = engine.status()["channels"]
    assert channel["state"] == "reconnecting" and "secret" not in str(channel)
    assert await readyz(engine) == (503, True)
    assert await engine.control("mq", "stop") is ChannelState.STOPPED


async def test_the_content_encoding_property_names_the_charset_as_spring_amqp_sets_it(
        make_config: Any, engine_factory: Any, rabbitmq: Any) -> None:
    """Spring AMQP producers put the charset in `content_encoding`; no MSH-18, no charset parameter."""
    engine, queue = await start_engine(make_config, engine_factory, rabbitmq)
    body = ORU.format(cid="GBQ-1").replace("PID|1||", "PID|1||张三").encode("gb18030")
    async with await aio_pika.connect(rabbitmq.url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(body, content_type="x-application/hl7-v2+er7", content_encoding="gb18030",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue)

    async def stored() -> bool:
        return len(await rows(engine)) == 1

    await eventually(stored, what="the GB 18030 message stored")
    found = await engine.store.read(lambda c: c.execute("SELECT state, charset FROM messages").fetchone())
    assert found[0] != "rejected" and found[1] == "gb18030"
