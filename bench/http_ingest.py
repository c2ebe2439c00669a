"""Benchmark: HTTP ingest, HL7 v2 posts/s answered AA after the durable commit, against bare aiohttp.

8 concurrent senders (keep-alive connections, one request at a time each) post HL7 v2 messages to
`POST /hl7v2` for a fixed time. The baseline is a bare aiohttp handler that reads the body and returns
a fixed ACK (no parsing, no storage); the candidate is a real yonglink engine with an HTTP channel
(parse, SQLite group commit, ACK built from the message). The senders run in a separate process so
the server process is what is measured; both servers are measured in the same run.

    .venv/bin/python bench/http_ingest.py [--seconds 8] [--senders 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

ADT = ("MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|A01|20240101120000\rPID|1||{cid}^^^NBH^MR||ZHANG^SAN||19800101|M|||1 RENMIN RD^^NINGBO\r"
       "PV1|1|I|W1^101^1\r")
FIXED_ACK = b"MSH|^~\\&|YONGLINK|NB|HIS|NBH|20240101120000||ACK^A01^ACK|1|P|2.5.1\rMSA|AA|1\r"


async def _send(url: str, seconds: float, senders: int, tag: str) -> tuple[int, float]:
    done = 0
    stop_at = time.perf_counter() + seconds
    headers = {"Content-Type": "x-application/hl7-v2+er7"}

    async def sender(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop_at:
            body = ADT.format(cid=f"{tag}{k}-{i}").encode()
            async with session.post(url, data=body, headers=headers) as resp:
                text = await resp.read()
                if resp.status != 200 or b"MSA|AA|" not in text:
                    raise RuntimeError(f"unexpected answer {resp.status}: {text[:80]!r}")
            done += 1
            i += 1

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender(k, session) for k in range(senders)))
        return done, time.perf_counter() - t0


def _client(url: str, seconds: float, senders: int, tag: str, out: multiprocessing.Queue[float]) -> None:
    n, elapsed = asyncio.run(_send(url, seconds, senders, tag))
    out.put(n / elapsed)


async def measure(url: str, seconds: float, senders: int, tag: str) -> float:
    """Run the senders in another process; returns requests/s."""
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[float] = ctx.Queue()
    proc = ctx.Process(target=_client, args=(url, seconds, senders, tag, out))
    proc.start()
    rate: float = await asyncio.to_thread(out.get, True, seconds + 60)
    await asyncio.to_thread(proc.join)
    return rate


async def bare(seconds: float, senders: int) -> float:
    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=FIXED_ACK, content_type="x-application/hl7-v2+er7")

    app = web.Application()
    app.router.add_post("/hl7v2", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await measure(f"http://127.0.0.1:{port}/hl7v2", 1.0, senders, "w")  # warm-up
        return await measure(f"http://127.0.0.1:{port}/hl7v2", seconds, senders, "b")
    finally:
        await runner.cleanup()


async def yonglink(seconds: float, senders: int, tmp: Path) -> tuple[float, int]:
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
        rate = await measure(url, seconds, senders, "y")
        stored = await engine.store.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone()[0])
        return rate, int(stored)
    finally:
        await engine.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--senders", type=int, default=8)
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    base = await bare(args.seconds, args.senders)
    with tempfile.TemporaryDirectory(prefix="yonglink-bench-") as tmp:
        ours, stored = await yonglink(args.seconds, args.senders, Path(tmp))
    print(f"http ingest, {args.senders} concurrent senders, {args.seconds:.0f}s per server")
    print(f"  bare aiohttp handler (no parse, no store): {base:9.0f} req/s")
    print(f"  yonglink (AA after SQLite commit):         {ours:9.0f} req/s  ({stored} stored)")
    print(f"  ratio yonglink / bare:                     {ours / base:9.2f}")


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
