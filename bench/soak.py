"""Soak: mixed MLLP / HTTP / AMQP traffic for a long time against a destination that flaps.

    .venv/bin/python bench/soak.py [--minutes 60] [--rate 30] [--flap-up 180] [--flap-down 60]
                                   [--no-amqp] [--store-dir DIR]
    make soak MINUTES=60

Processes: the engine (`Engine.run_until_signalled`, channels `lab` (MLLP), `web` (HTTP) and `queue`
(AMQP, on a private RabbitMQ started from tests/support/broker.py), one pass-through route per message
type to the `sink` destination), and this driver: the traffic (`--rate` messages/s in all, split 60 %
MLLP over 4 connections, 20 % HTTP (HL7 v2 and FHIR Patient), 20 % AMQP), and an aiohttp sink that
answers 200 for `--flap-up` seconds and 503 for `--flap-down` seconds, over and over.

Every minute it prints: messages sent per channel, the engine's RSS and open files (/proc), p99 ACK
latency seen by the MLLP and HTTP senders, and the store's dead-letter count and delivery backlog. At the
end it stops the traffic, lets the backlog drain through one more up phase, and checks the bounds:

- RSS: the last minute's RSS at most `--max-rss-growth-mb` (64) above the highest of minutes 2-3
  (the first minutes warm caches and the store's page cache);
- open files: at most `--max-fd-growth` (16) above minute 2's (connections come and go; a leak grows);
- p99 ACK latency of MLLP in every minute at most `--max-p99-ms` (500): a flapping destination must not
  slow ingest (loose: 2 shared cores);
- dead letters: at most `--max-dead` (0): with the retry policy below, an outage of `--flap-down` seconds
  must never dead-letter anything;
- nothing lost: every message the senders got a positive answer for is in the store, and the backlog
  drains to 0 after the traffic stops.

Exit 0 when every bound held, 1 otherwise (the failing bound is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from channels.mllp.client import MllpClient  # noqa: E402

# Shapes: HL7 v2.5.1 ADT^A01 (§3.3.1) and ORU^R01 (§7.3.1), FHIR R4B Patient (patient-example.json).
ADT = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|A01|20240301101500\rPID|1||{cid}^^^NBDYYY^PI||TEST^SOAK||19800101|M\r"
       "PV1|1|I|0301^0301-12^03^NBDYYY\r")
ORU = ("MSH|^~\\&|LIS|NBDYYY|EMPI|NBWJW|20240301101523||ORU^R01^ORU_R01|{cid}|P|2.5.1\r"
       "PID|1||{cid}^^^NBDYYY^PI||TEST^SOAK||19800101|F\rOBR|1||{cid}|CBC\r"
       "OBX|1|NM|718-7^Hemoglobin^LN||130|g/L|115-150|N|||F\r")
PATIENT = '{{"resourceType": "Patient", "id": "{cid}", "gender": "female", "birthDate": "1980-01-01"}}'

ENGINE = """
import asyncio, json, sys
from engine.commands.run import tune_interpreter
tune_interpreter()
from engine.config import load_config
from engine.logs import configure_logging
from engine.runtime import Engine
config = load_config(sys.argv[1])
configure_logging(config.engine.log)
async def main():
    engine = Engine(config)
    task = asyncio.ensure_future(engine.run_until_signalled())
    names = [c.name for c in config.channels]
    while any(engine.channels[n].inbound is None or engine.channels[n].state.value != 'started'
              for n in names if n != 'queue'):
        await asyncio.sleep(0.05)
    print(json.dumps({'mllp': engine.channels['lab'].inbound.port_bound,
                      'http': engine.channels['web'].inbound.port}), flush=True)
    await task
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def load_broker() -> Any:
    path = REPO / "tests" / "support" / "broker.py"
    spec = importlib.util.spec_from_file_location("yonglink_soak_broker", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_config(tmp: Path, sink_port: int, amqp_url: str | None) -> Path:
    routes = []
    for mtype in ("ADT^A01", "ORU^R01", "Patient"):
        name = mtype.replace("^", "_").lower()
        match = f"resource_type: {mtype}" if mtype == "Patient" else f"message_type: {mtype}"
        (tmp / f"{name}.yaml").write_text(f"id: soak_{name}\nmatch: {{{match}}}\npassthrough: true\n"
                                          "destinations: [sink]\n", encoding="utf-8")
        routes.append(f"{name}.yaml")
    amqp = (f"""
  - name: queue
    type: amqp
    amqp: {{url: "{amqp_url}", queue: soak, declare: true, prefetch: 50}}""" if amqp_url else "")
    config = tmp / "soak.yaml"
    config.write_text(f"""
engine:
  store: {{path: {tmp / 'soak.db'}}}
  admin: {{enabled: false}}
  log: {{format: json, level: warning}}
channels:
  - name: lab
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
  - name: web
    type: http
    http: {{listen: "127.0.0.1:0"}}{amqp}
destinations:
  - name: sink
    type: http
    concurrency: 8
    retry: {{initial_delay: 1s, max_delay: 30s, max_attempts: 1000, max_age: 1d}}
    http: {{url: "http://127.0.0.1:{sink_port}/in", read_timeout: 5s}}
routes: [{", ".join(routes)}]
""", encoding="utf-8")
    return config


class FlappingSink:
    """200 for `up` seconds, then 503 for `down` seconds, repeating; counts distinct delivery ids."""

    def __init__(self, up: float, down: float) -> None:
        self.up, self.down = up, down
        self.started = time.monotonic()
        self.delivered: set[str] = set()
        self.refused = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    def is_up(self) -> bool:
        return (time.monotonic() - self.started) % (self.up + self.down) < self.up

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        if not self.is_up():
            self.refused += 1
            return web.Response(status=503, text="flapping: down\n")
        self.delivered.add(request.headers.get("Idempotency-Key", ""))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/in", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])


class Traffic:
    """Paced senders; latencies of the current minute, positive answers counted per channel."""

    def __init__(self, ports: dict[str, int], amqp_url: str | None, rate: float) -> None:
        self.ports, self.amqp_url, self.rate = ports, amqp_url, rate
        self.sent = {"mllp": 0, "http": 0, "amqp": 0}
        self.failed = {"mllp": 0, "http": 0, "amqp": 0}
        self.mllp_lat: list[float] = []
        self.http_lat: list[float] = []
        self.stop = asyncio.Event()
        self.seq = 0

    def cid(self, kind: str) -> str:
        self.seq += 1
        return f"SOAK-{kind}-{self.seq}"

    async def paced(self, per_second: float, one: Callable[[], Any]) -> None:
        interval = 1.0 / per_second
        nxt = time.monotonic()
        while not self.stop.is_set():
            await one()
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
            else:
                nxt = time.monotonic()

    async def mllp_sender(self, per_second: float) -> None:
        client = MllpClient("127.0.0.1", self.ports["mllp"], timeout=30.0)
        await client.connect()

        async def one() -> None:
            template = ADT if self.seq % 2 else ORU
            started = time.perf_counter()
            try:
                ack = await client.send(template.format(cid=self.cid("M")).encode())
            except Exception:
                self.failed["mllp"] += 1
                return
            self.mllp_lat.append(time.perf_counter() - started)
            if b"MSA|AA|" in ack:
                self.sent["mllp"] += 1
            else:
                self.failed["mllp"] += 1

        try:
            await self.paced(per_second, one)
        finally:
            await client.close()

    async def http_sender(self, per_second: float) -> None:
        base = f"http://127.0.0.1:{self.ports['http']}"
        async with aiohttp.ClientSession() as http:
            async def one() -> None:
                fhir = self.seq % 2 == 0
                cid = self.cid("H")
                url, body, ctype = ((f"{base}/fhir", PATIENT.format(cid=cid), "application/fhir+json") if fhir
                                    else (f"{base}/hl7v2", ADT.format(cid=cid), "x-application/hl7-v2+er7"))
                started = time.perf_counter()
                try:
                    async with http.post(url, data=body.encode(), headers={"Content-Type": ctype}) as resp:
                        text = await resp.read()
                        ok = resp.status in (200, 201) and (fhir or b"MSA|AA|" in text)
                except aiohttp.ClientError:
                    ok = False
                self.http_lat.append(time.perf_counter() - started)
                self.sent["http"] += int(ok)
                self.failed["http"] += int(not ok)

            await self.paced(per_second, one)

    async def amqp_sender(self, per_second: float) -> None:
        import aio_pika

        assert self.amqp_url is not None
        async with await aio_pika.connect(self.amqp_url) as conn:
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue("soak", durable=True)

            async def one() -> None:
                cid = self.cid("A")
                try:
                    await channel.default_exchange.publish(aio_pika.Message(
                        ORU.format(cid=cid).encode(), content_type="x-application/hl7-v2+er7", message_id=cid,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key="soak")
                    self.sent["amqp"] += 1
                except Exception:
                    self.failed["amqp"] += 1

            await self.paced(per_second, one)

    def tasks(self) -> list[asyncio.Task[None]]:
        mllp_rate = self.rate * (0.6 if self.amqp_url else 0.8)
        out = [asyncio.create_task(self.mllp_sender(mllp_rate / 4)) for _ in range(4)]
        out.append(asyncio.create_task(self.http_sender(self.rate * 0.2)))
        if self.amqp_url:
            out.append(asyncio.create_task(self.amqp_sender(self.rate * 0.2)))
        return out


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS MB, open file descriptors) of a process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def store_counts(db: Path) -> tuple[int, int, int]:
    """(messages stored, dead letters, deliveries still queued), read-only beside the engine's writer."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        msgs = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        dead = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'dead'").fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'queued'").fetchone()[0]
        return int(msgs), int(dead), int(queued)
    finally:
        conn.close()


def store_bytes(tmp: Path) -> int:
    """The store's size on disk: the database file and its WAL."""
    return sum(os.path.getsize(p) for p in glob.glob(f"{tmp}/soak.db*"))


def p99_ms(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def soak(args: argparse.Namespace, tmp: Path, amqp_url: str | None) -> int:
    sink = FlappingSink(args.flap_up, args.flap_down)
    await sink.start()
    config = write_config(tmp, sink.port, amqp_url)
    engine = subprocess.Popen(  # noqa: ASYNC220 - started once, before any traffic
        [sys.executable, "-c", ENGINE, str(config)], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    line = await asyncio.to_thread(engine.stdout.readline) if engine.stdout else ""
    if not line:
        print("engine did not start", file=sys.stderr)
        return 1
    if engine.stdout is not None:  # keep reading what the engine prints, so its pipe never fills
        stdout = engine.stdout
        threading.Thread(target=lambda: [sys.stdout.write(x) for x in stdout], daemon=True).start()
    traffic = Traffic(json.loads(line), amqp_url, args.rate)
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    print("min  mllp  http  amqp  failed  rss_mb  fds  p99_mllp_ms  p99_http_ms  dead  queued  sink",
          flush=True)
    senders = traffic.tasks()
    try:
        for minute in range(1, int(args.minutes) + 1):
            await asyncio.sleep(60.0)
            rss, fds = proc_stats(engine.pid)
            msgs, dead, queued = await asyncio.to_thread(store_counts, tmp / "soak.db")
            row = {"minute": minute, **traffic.sent, "failed": sum(traffic.failed.values()), "rss_mb": rss,
                   "fds": fds, "p99_mllp_ms": p99_ms(traffic.mllp_lat),
                   "p99_http_ms": p99_ms(traffic.http_lat), "dead": dead, "queued": queued,
                   "sink": "up" if sink.is_up() else "down"}
            traffic.mllp_lat, traffic.http_lat = [], []
            rows.append(row)
            print(f"{minute:>3} {row['mllp']:>5} {row['http']:>5} {row['amqp']:>5} {row['failed']:>7} "
                  f"{rss:>7.1f} {fds:>4} {row['p99_mllp_ms']:>12.1f} {row['p99_http_ms']:>12.1f} "
                  f"{dead:>5} {queued:>7}  {row['sink']}", flush=True)
            if engine.poll() is not None:
                failures.append(f"the engine exited with {engine.returncode}")
                break
    finally:
        traffic.stop.set()
        await asyncio.gather(*senders, return_exceptions=True)
    # Drain: wait for the sink's next up phase to take the backlog (at most one flap period + 2 min).
    deadline = time.monotonic() + args.flap_up + args.flap_down + 120
    msgs, dead, queued = await asyncio.to_thread(store_counts, tmp / "soak.db")
    while queued and time.monotonic() < deadline and engine.poll() is None:
        await asyncio.sleep(2.0)
        msgs, dead, queued = await asyncio.to_thread(store_counts, tmp / "soak.db")
    engine.send_signal(signal.SIGTERM)
    await asyncio.to_thread(engine.wait, 30)
    await (sink.runner.cleanup() if sink.runner else asyncio.sleep(0))

    acked = sum(traffic.sent.values())
    db_bytes = store_bytes(tmp)
    per = db_bytes / max(msgs, 1) / 1024
    print(f"\nstore: {db_bytes / 1e6:.1f} MB for {msgs:,} messages = {per:.1f} KiB per message "
          "(raw + delivery payload + attempt log; docs/operations-sizing.md)")
    print(f"total: {acked:,} messages answered positively ({traffic.sent}), {msgs:,} stored, "
          f"{len(sink.delivered):,} distinct deliveries at the sink ({sink.refused:,} refused while down), "
          f"dead {dead}, still queued {queued}")
    failures += check_bounds(rows, args, acked=acked, stored=msgs, dead=dead, queued=queued)
    for failure in failures:
        print(f"BOUND EXCEEDED: {failure}")
    print("soak passed" if not failures else "soak FAILED")
    return 1 if failures else 0


def check_bounds(rows: list[dict[str, Any]], args: argparse.Namespace, *, acked: int, stored: int, dead: int,
                 queued: int) -> list[str]:
    out = []
    if len(rows) >= 4:
        base_rss = max(r["rss_mb"] for r in rows[1:3])
        if rows[-1]["rss_mb"] - base_rss > args.max_rss_growth_mb:
            out.append(f"RSS grew {rows[-1]['rss_mb'] - base_rss:.1f} MB after minute 3 "
                       f"(bound {args.max_rss_growth_mb} MB)")
        if rows[-1]["fds"] - rows[1]["fds"] > args.max_fd_growth:
            out.append(f"open files grew by {rows[-1]['fds'] - rows[1]['fds']} (bound {args.max_fd_growth})")
    worst = max((r["p99_mllp_ms"] for r in rows), default=0.0)
    if worst > args.max_p99_ms:
        out.append(f"MLLP p99 ACK latency {worst:.0f} ms in one minute (bound {args.max_p99_ms} ms)")
    if dead > args.max_dead:
        out.append(f"{dead} dead letters (bound {args.max_dead})")
    if stored < acked:
        out.append(f"{acked - stored} positively answered messages are not in the store")
    if queued:
        out.append(f"{queued} deliveries still queued after the drain")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=30.0, help="messages/s over all channels")
    parser.add_argument("--flap-up", type=float, default=180.0, help="seconds the destination answers 200")
    parser.add_argument("--flap-down", type=float, default=60.0, help="seconds it answers 503")
    parser.add_argument("--no-amqp", action="store_true", help="skip AMQP (no RabbitMQ on this machine)")
    parser.add_argument("--store-dir", type=Path, default=None)
    parser.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    parser.add_argument("--max-fd-growth", type=int, default=16)
    parser.add_argument("--max-p99-ms", type=float, default=500.0)
    parser.add_argument("--max-dead", type=int, default=0)
    args = parser.parse_args()
    broker = None
    if not args.no_amqp:
        broker = load_broker().PrivateBroker()
        broker.start()
    try:
        with tempfile.TemporaryDirectory(prefix="yonglink-soak-", dir=args.store_dir) as tmp:
            return asyncio.run(soak(args, Path(tmp), broker.url if broker else None))
    finally:
        if broker is not None:
            broker.close()


if __name__ == "__main__":
    sys.exit(main())
