"""Benchmark: HTTP ingest, HL7 v2 posts/s answered AA after the durable commit, against bare aiohttp.

N concurrent senders (keep-alive connections, one request at a time each) post HL7 v2 messages to
`POST /hl7v2` for a fixed time, for each N of `--senders` (default 1 and 8). Three servers, in the same
run and the same process settings:

- bare: an aiohttp handler that reads the body and returns a fixed ACK (no parsing, no storage), the
  target's denominator (issue #13 item 4: yonglink >= 0.6 of it);
- bare+commit: the same handler, but it answers only after bench/_bare_durable.py's writer committed
  the message (the engine's `messages` table, WAL, synchronous=FULL, one insert per loop turn, group
  commit): what is left when everything but the durable commit is taken out, as in mllp_ingest.py;
- yonglink: a real engine with an HTTP channel (parse, checks, SQLite group commit, ACK from the message).

With one sender every request waits for its own fdatasync, so bare+commit, not bare, shows what the disk
allows; the p50/p99 columns are the senders' request latencies. The senders run in a separate process
so the server process is what is measured.

    .venv/bin/python bench/http_ingest.py [--seconds 8] [--senders 1,8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

ADT = ("MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|A01|20240101120000\rPID|1||{cid}^^^NBH^MR||ZHANG^SAN||19800101|M|||1 RENMIN RD^^NINGBO\r"
       "PV1|1|I|W1^101^1\r")
FIXED_ACK = b"MSH|^~\\&|YONGLINK|NB|HIS|NBH|20240101120000||ACK^A01^ACK|1|P|2.5.1\rMSA|AA|1\r"


Result = tuple[float, float, float]
"""Requests/s, p50 and p99 request latency in ms."""


async def _send(url: str, seconds: float, senders: int, tag: str) -> tuple[int, float, list[float]]:
    done = 0
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    headers = {"Content-Type": "x-application/hl7-v2+er7"}

    async def sender(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            body = ADT.format(cid=f"{tag}{k}-{i}").encode()
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                text = await resp.read()
                if resp.status != 200 or b"MSA|AA|" not in text:
                    raise RuntimeError(f"unexpected answer {resp.status}: {text[:80]!r}")
            latencies.append(time.perf_counter() - started)
            done += 1
            i += 1

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender(k, session) for k in range(senders)))
        return done, time.perf_counter() - t0, latencies


def _client(url: str, seconds: float, senders: int, tag: str, out: multiprocessing.Queue[Result]) -> None:
    n, elapsed, latencies = asyncio.run(_send(url, seconds, senders, tag))
    latencies.sort()
    out.put((n / elapsed, latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3))


async def measure(url: str, seconds: float, senders: int, tag: str) -> Result:
    """Run the senders in another process; returns requests/s, p50 and p99 latency (ms)."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[Result] = ctx.Queue()
    proc = ctx.Process(target=_client, args=(url, seconds, senders, tag, out))
    proc.start()
    result: Result = await asyncio.to_thread(out.get, True, seconds + 60)
    await asyncio.to_thread(proc.join)
    return result


class _Answer:
    """What bench/_bare_durable.py's writer answers through (`transport.write(ack)` after COMMIT): here
    it settles the waiting request's future."""

    def __init__(self, fut: asyncio.Future[bytes]) -> None:
        self.fut = fut

    def is_closing(self) -> bool:
        return self.fut.done()

    def write(self, ack: bytes) -> None:
        self.fut.set_result(ack)


async def bare(seconds: float, senders: int, tag: str, store: Path | None = None) -> Result:
    """The bare aiohttp handler; with `store`, it answers after bench/_bare_durable.py committed the body."""
    server: Any = None
    if store is not None:
        from bench._bare_durable import _Server

        server = _Server(str(store))

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        if server is not None:
            fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            server.frame(_Answer(fut), body)
            await fut
        return web.Response(body=FIXED_ACK, content_type="x-application/hl7-v2+er7")

    app = web.Application()
    app.router.add_post("/hl7v2", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await measure(f"http://127.0.0.1:{port}/hl7v2", 1.0, senders, f"w{tag}")  # warm-up
        return await measure(f"http://127.0.0.1:{port}/hl7v2", seconds, senders, tag)
    finally:
        await runner.cleanup()


async def yonglink(seconds: float, senders: int, tmp: Path) -> tuple[Result, int]:
    from engine.config import parse_config
    from engine.runtime import Engine

    text = f"""
engine:
  store: {{path: {tmp}/bench.db}}
  admin: {{enabled: false}}
  log: {{level: warning}}
channels:
  - name: web
    type: http
    http: {{listen: "127.0.0.1:0"}}
"""
    engine = Engine(parse_config(text, file=tmp / "bench.yaml"))
    await engine.start()
    inbound = engine.channels["web"].inbound
    if inbound is None:
        raise RuntimeError(f"http channel did not start: {engine.channels['web'].stats.last_error}")
    url = inbound.describe()["url"] + "hl7v2"
    try:
        await measure(url, 1.0, senders, "w")
        result = await measure(url, seconds, senders, "y")
        stored = await engine.store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
        return result, int(stored)
    finally:
        await engine.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--senders", default="1,8", help="comma-separated sender counts (default 1,8)")
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(f"http ingest, {args.seconds:.0f}s per server and sender count; request latency p50/p99 in ms")
    print("senders |  bare req/s p50  p99 | bare+commit req/s p50  p99 | yonglink req/s p50  p99 "
          "| /bare /bare+commit")
    for senders in (int(n) for n in str(args.senders).split(",")):
        with tempfile.TemporaryDirectory(prefix="yonglink-bench-") as tmp:
            base = await bare(args.seconds, senders, "b")
            durable = await bare(args.seconds, senders, "d", store=Path(tmp) / "bare.db")
            ours, stored = await yonglink(args.seconds, senders, Path(tmp))
        print(f"{senders:7d} | {base[0]:10,.0f} {base[1]:4.1f} {base[2]:4.1f} | {durable[0]:17,.0f} "
              f"{durable[1]:4.1f} {durable[2]:4.1f} | {ours[0]:14,.0f} {ours[1]:4.1f} {ours[2]:4.1f} "
              f"| {ours[0] / base[0]:5.2f} {ours[0] / durable[0]:12.2f}   ({stored} stored)", flush=True)


if __name__ == "__main__":
    # The process settings of `yonglink run` (as bench/mllp_ingest.py's engine): the GIL switch interval
    # the store's writer thread needs, and uvloop; the bare handler runs in the same process, so both
    # servers are measured on the same event loop.
    from engine.commands.run import tune_interpreter

    tune_interpreter()
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
