"""Benchmark: AMQP ingest, messages/s acked after the durable commit, against a bare aio-pika consumer.

8 concurrent publishers (publisher confirms, persistent messages; in a separate process) send N HL7 v2
messages to a fresh durable queue while a consumer drains it; the rate is N / (first publish → last
ack or commit). The baseline
is a bare aio-pika consumer with the same prefetch that acks each delivery at once and stores
nothing; the candidate is a real yonglink engine (SQLite store, group commit) with an AMQP channel.
Both run in this process against the same private RabbitMQ (tests/support/broker.py), in the same run.

    .venv/bin/python bench/amqp_ingest.py [--messages 6000] [--senders 8] [--prefetch 200] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aio_pika  # noqa: E402

from engine.config import parse_config  # noqa: E402
from engine.runtime import Engine  # noqa: E402

ORU = ("MSH|^~\\&|LIS|NBH|YONGLINK|NB|20240101120000||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
       "PID|1||{cid}^^^NBH^MR||WANG^WU||19700101|F\rOBR|1||{cid}|CBC\r"
       "OBX|1|NM|718-7^Hemoglobin^LN||130|g/L|115-150|N|||F\r")


def load_broker() -> object:
    path = ROOT / "tests" / "support" / "broker.py"
    spec = importlib.util.spec_from_file_location("yonglink_tests_broker", path)
    if spec is None or spec.loader is None:
        raise ImportError("tests/support/broker.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def publish(url: str, queue: str, n: int, senders: int, tag: str) -> None:
    async def sender(k: int) -> None:
        async with await aio_pika.connect(url) as conn:
            ch = await conn.channel(publisher_confirms=True)
            pending: list[Awaitable[object]] = []
            for i in range(k, n, senders):
                body = ORU.format(cid=f"{tag}{i}").encode()
                pending.append(ch.default_exchange.publish(
                    aio_pika.Message(body, content_type="x-application/hl7-v2+er7", message_id=f"{tag}{i}",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=queue))
                if len(pending) >= 100:  # a window of unconfirmed publishes per sender
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)

    await asyncio.gather(*(sender(k) for k in range(senders)))


async def declare(url: str, queue: str) -> None:
    async with await aio_pika.connect(url) as conn:
        await (await conn.channel()).declare_queue(queue, durable=True)


async def wait_for(done: Callable[[], bool]) -> None:
    while not done():  # noqa: ASYNC110 - polls a counter the engine owns; 2 ms is far below the run
        await asyncio.sleep(0.002)


def _publisher(url: str, queue: str, n: int, senders: int, tag: str) -> None:
    asyncio.run(publish(url, queue, n, senders, tag))


async def publish_elsewhere(url: str, queue: str, n: int, senders: int, tag: str) -> None:
    """The publishers run in another process, so this process measures the consumer alone."""
    proc = multiprocessing.get_context("spawn").Process(target=_publisher, args=(url, queue, n, senders, tag))
    proc.start()
    await asyncio.to_thread(proc.join)
    if proc.exitcode != 0:
        raise RuntimeError(f"publisher process failed with exit code {proc.exitcode}")


async def bare(url: str, n: int, senders: int, prefetch: int) -> float:
    """A consumer that acks at once and stores nothing."""
    queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    await declare(url, queue)
    acked = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal acked
        await message.ack()
        acked += 1

    async with await aio_pika.connect(url) as conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=prefetch)
        q = await ch.get_queue(queue)
        await q.consume(on_message)
        t0 = time.perf_counter()
        await asyncio.gather(publish_elsewhere(url, queue, n, senders, "b"), wait_for(lambda: acked >= n))
        return n / (time.perf_counter() - t0)


async def yonglink(url: str, n: int, senders: int, prefetch: int, tmp: Path) -> float:
    """The engine: each delivery committed to SQLite before its ack."""
    queue = f"bench-yl-{uuid.uuid4().hex[:8]}"
    text = f"""
engine:
  store: {{path: {tmp}/bench.db}}
  admin: {{enabled: false}}
  log: {{level: warning}}
channels:
  - name: mq
    type: amqp
    amqp: {{url: "{url}", queue: {queue}, declare: true, prefetch: {prefetch}}}
"""
    engine = Engine(parse_config(text, file=tmp / "bench.yaml"))
    await engine.start()
    counts = engine.channels["mq"].stats.counts
    try:
        t0 = time.perf_counter()
        await asyncio.gather(publish_elsewhere(url, queue, n, senders, "y"),
                             wait_for(lambda: counts["received"] + counts["duplicate"] >= n))
        return n / (time.perf_counter() - t0)
    finally:
        await engine.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--messages", type=int, default=6000)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--prefetch", type=int, default=200)
    ap.add_argument("--url", help="an existing broker (default: start a private one)")
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    broker = None
    url = args.url
    if url is None:
        broker = load_broker().PrivateBroker()  # type: ignore[attr-defined]
        broker.start()
        print(f"private RabbitMQ started in {broker.startup_seconds[0]:.1f}s")
        url = broker.url
    try:
        with tempfile.TemporaryDirectory(prefix="yonglink-bench-") as tmp:
            await bare(url, 1000, args.senders, args.prefetch)  # warm-up
            base = await bare(url, args.messages, args.senders, args.prefetch)
            ours = await yonglink(url, args.messages, args.senders, args.prefetch, Path(tmp))
    finally:
        if broker is not None:
            broker.close()
    print(f"amqp ingest, {args.messages} messages, {args.senders} senders, prefetch {args.prefetch}")
    print(f"  bare aio-pika consumer (ack, no store): {base:9.0f} msg/s")
    print(f"  yonglink (ack after SQLite commit):     {ours:9.0f} msg/s")
    print(f"  ratio yonglink / bare:                  {ours / base:9.2f}")


if __name__ == "__main__":
    asyncio.run(main())
