"""End-to-end benchmark: MLLP in → route (ADT^A01 → person record, or pass-through) → HTTP sink.

    .venv/bin/python bench/end_to_end.py [--seconds 10] [--connections 32] [--mode person|passthrough]
                                         [--outage SECONDS] [--store-dir DIR] [--batch N]

Three processes: the engine (`Engine.run_until_signalled`, an MLLP channel, one route, an `http`
destination), an aiohttp sink that counts distinct delivery ids (`Idempotency-Key`, or each id of
`X-Delivery-Ids` for a batch; a delivery counts once it is sink-confirmed), and the MLLP load generator
of bench/mllp_ingest.py (each connection sends a 1.5 KB ADT^A01 and waits for its ACK). Reports the
ACKed ingest rate, the sink-confirmed delivery rate over the whole run (first send → last delivery), and
how long the backlog took to drain after the load stopped.
`--outage S` makes the sink answer 503 for the first S seconds of the load (the backlog then
drains through the retry policy); the issue's 10-minute outage run is `--seconds 600 --outage 600`.
`--backlog N` instead writes N queued deliveries into the store before the engine starts (a restart
after a long outage), then reports the time to the first delivery, the drain rate and the engine's
peak RSS (the issue's 1,000,000 case: `--backlog 1000000`). `--batch N` gives the destination
`batch: {max_records: N, max_wait: 50ms}` (JSON arrays of up to N records per request).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def _ingest_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_mllp_ingest", REPO / "bench" / "mllp_ingest.py")
    if spec is None or spec.loader is None:
        raise ImportError("bench/mllp_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the sink ----------------------------------------------------------------------------------------


async def _sink(outage_until_flag: str) -> None:
    from aiohttp import web

    keys: set[str] = set()
    state = {"requests": 0, "outage": outage_until_flag == "1", "last": 0.0}

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        state["requests"] += 1
        if state["outage"]:
            return web.Response(status=503, text="outage")
        batch = request.headers.get("X-Delivery-Ids")
        if batch:
            keys.update(batch.split(","))
        else:
            keys.add(request.headers.get("Idempotency-Key", ""))
        state["last"] = time.time()
        return web.Response(status=201, text="ok")

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"delivered": len(keys), "requests": state["requests"],
                                  "last": state["last"]})

    async def outage(request: web.Request) -> web.Response:
        state["outage"] = request.query.get("on") == "1"
        return web.json_response({"outage": state["outage"]})

    app = web.Application()
    app.router.add_post("/in", receive)
    app.router.add_get("/count", count)
    app.router.add_post("/outage", outage)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    await asyncio.Event().wait()


def _get(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


# --- orchestration -------------------------------------------------------------------------------------


def _write_config(tmp: Path, sink_port: int, mode: str, batch: int = 0, workers: int = 0) -> Path:
    if mode == "person":
        route = (REPO / "mappings" / "adt_person.yaml").read_text(encoding="utf-8")
        route = route.replace("destinations: []", "destinations: [sink]")
    else:
        route = ("id: adt_passthrough\nmatch: {message_type: ADT^A01}\npassthrough: true\n"
                 "destinations: [sink]\n")
    (tmp / "route.yaml").write_text(route, encoding="utf-8")
    batching = f", batch: {{max_records: {batch}, max_wait: 50ms}}" if batch else ""
    config = tmp / "bench.yaml"
    config.write_text(f"""
engine:
  store: {{path: {tmp / 'bench.db'}}}
  admin: {{enabled: false}}
  log: {{format: json, level: warning}}
  tables: {REPO / 'mappings' / 'tables'}
  mapping_workers: {workers}
channels:
  - name: bench
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
destinations:
  - name: sink
    type: http
    concurrency: 32
    retry: {{initial_delay: 0.5, max_delay: 5s}}
    http: {{url: "http://127.0.0.1:{sink_port}/in"{batching}}}
routes: [route.yaml]
""", encoding="utf-8")
    return config


def _prefill(db: Path, n: int) -> None:
    """N mapped messages, each with a queued delivery to `sink`, as a crash would leave them."""
    import sqlite3

    from engine.ids import new_id
    from engine.store import migrations

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrations.apply_sqlite(conn)
    now = time.time()
    payload = json.dumps({"patient_id": "0001234567", "name": "x" * 8, "sex_code": "1"}).encode()
    conn.execute("BEGIN")
    for start in range(0, n, 50_000):
        ids = [(new_id(now), i) for i in range(start, min(n, start + 50_000))]
        conn.executemany("INSERT INTO messages (id, channel, received_at, content_type, state) VALUES"
                         " (?, 'bench', ?, 'x-application/hl7-v2+er7', 'mapped')", [(m, now) for m, _ in ids])
        conn.executemany("INSERT INTO deliveries (id, message_id, destination, route_id, dataset, state,"
                         " attempts, next_attempt_at, created_at, content_type, payload) VALUES"
                         " (?, ?, 'sink', 'adt_person', 'person', 'queued', 0, ?, ?, 'application/json', ?)",
                         [(new_id(now), m, now, now, payload) for m, _ in ids])
    conn.execute("COMMIT")
    conn.close()


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _backlog_run(args: argparse.Namespace, tmp: Path, ingest: Any) -> None:
    sink, sink_port = ingest._spawn([sys.executable, __file__, "--sink", "0"])
    sink_url = f"http://127.0.0.1:{sink_port}"
    config = _write_config(tmp, sink_port, args.mode, args.batch, args.mapping_workers)
    t0 = time.time()
    _prefill(tmp / "bench.db", args.backlog)
    print(f"backlog of {args.backlog:,} queued deliveries written in {time.time() - t0:.1f}s", flush=True)
    start = time.time()
    engine, _ = ingest._spawn([sys.executable, "-c", ingest._ENGINE_SNIPPET, str(config)])
    try:
        first = None
        peak = 0.0
        while True:
            peak = max(peak, _rss_mb(engine.pid))
            done = _get(f"{sink_url}/count")["delivered"]
            if done and first is None:
                first = time.time() - start
            if done >= args.backlog or (args.max_seconds and time.time() - start > args.max_seconds):
                break
            time.sleep(0.5)
        elapsed = time.time() - start
        first_text = "no delivery" if first is None else f"first delivery {first:.1f}s"
        print(f"{first_text} after the engine was started; {done:,} of {args.backlog:,} delivered in "
              f"{elapsed:.1f}s = {done / elapsed:,.0f} msg/s; engine peak RSS {peak:.0f} MB")
    finally:
        ingest.terminate(engine, sink)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of MLLP load")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--mode", choices=("person", "passthrough"), default="person")
    parser.add_argument("--outage", type=float, default=0.0, help="sink answers 503 for the first S seconds")
    parser.add_argument("--backlog", type=int, default=0, help="restart with N queued deliveries instead")
    parser.add_argument("--max-seconds", type=float, default=0.0,
                        help="with --backlog: stop after this long (measures RSS and resume, not the drain)")
    parser.add_argument("--batch", type=int, default=0, help="records per HTTP request (0: one each)")
    parser.add_argument("--mapping-workers", type=int, default=0,
                        help="engine.mapping_workers (0: map on the event loop)")
    parser.add_argument("--store-dir", help="directory for the SQLite store (default: a temp dir in ./var)")
    parser.add_argument("--sink", help=argparse.SUPPRESS)
    args = parser.parse_args()
    ingest = _ingest_module()
    runner = ingest._runner()
    if args.sink is not None:
        runner(_sink(args.sink))
        return 0

    base = Path(args.store_dir) if args.store_dir else REPO / "var"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-e2e-") as tmp:
        if args.backlog:
            _backlog_run(args, Path(tmp), ingest)
            return 0
        sink, sink_port = ingest._spawn([sys.executable, __file__, "--sink", "1" if args.outage else "0"])
        config = _write_config(Path(tmp), sink_port, args.mode, args.batch, args.mapping_workers)
        engine, mllp_port = ingest._spawn([sys.executable, "-c", ingest._ENGINE_SNIPPET, str(config)])
        sink_url = f"http://127.0.0.1:{sink_port}"
        try:
            print(f"mode {args.mode}; {args.connections} MLLP connections; {args.seconds:g}s load; "
                  f"outage {args.outage:g}s; batch {args.batch or 'off'}; "
                  f"mapping workers {args.mapping_workers}; cpus {os.cpu_count()}", flush=True)
            start = time.time()
            load = subprocess.Popen([sys.executable, str(REPO / "bench" / "mllp_ingest.py"), "--load",
                                     str(mllp_port), str(args.connections), str(args.seconds), "e2e"],
                                    stdout=subprocess.PIPE, text=True)
            if args.outage:
                time.sleep(args.outage)
                _get(f"{sink_url}/outage?on=0", "POST")
                outage_end = time.time()
                print(f"outage over after {outage_end - start:.1f}s; backlog "
                      f"{_get(f'{sink_url}/count')['requests']} refused requests so far", flush=True)
            out, _ = load.communicate()
            load_end = time.time()
            ingest_result = json.loads(out)
            # every ACKed message must reach the sink: wait until the count stops growing. After an
            # outage the destination is `down` and probes at most every retry max_delay (5 s here), so
            # a quiet spell must outlast two probes before it means "drained".
            last, stable_since = -1, time.time()
            while time.time() - stable_since < (12.0 if args.outage else 3.0):
                now_count = _get(f"{sink_url}/count")
                if now_count["delivered"] != last:
                    last, stable_since = now_count["delivered"], time.time()
                time.sleep(0.2)
            done = _get(f"{sink_url}/count")
            finished = done["last"] or load_end
            total = done["delivered"]
            print(f"ingest (ACKed, measured window): {ingest_result['msgs_per_s']:,.0f} msg/s, "
                  f"p50 {ingest_result['p50_ms']:.2f} ms, p99 {ingest_result['p99_ms']:.2f} ms")
            print(f"delivered (sink-confirmed, distinct keys): {total:,} in {finished - start:.1f}s = "
                  f"{total / max(finished - start, 1e-9):,.0f} msg/s; sink saw {done['requests']:,} requests")
            print(f"backlog drained {max(0.0, finished - load_end):.1f}s after the load stopped")
            rate = total / max(finished - start, 1e-9)
            print(f"delivered / ACKed ingest (same run): {rate / max(ingest_result['msgs_per_s'], 1e-9):.2f}"
                  " (1.00: delivery keeps pace with what the senders get ACKed)")
        finally:
            ingest.terminate(engine, sink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
