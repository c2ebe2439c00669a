"""MLLP ingest benchmark: the engine (commit with synchronous=FULL before every ACK) against two ceilings.

    .venv/bin/python bench/mllp_ingest.py [--seconds 5] [--store-dir DIR] [--connections 1,8,32]

Starts, each in its own process: the engine (`yonglink run`, an MLLP channel, no routes), a bare
asyncio MLLP server that answers every frame with a fixed ACK and stores nothing (the network
ceiling), bench/_bare_durable.py (a bare server that only commits each frame before its ACK: the
store's ceiling on this disk), and a load generator (asyncio Protocol, uvloop when available).
Each connection sends a 1.5 KB ADT^A01 with a unique MSH-10 and waits for its ACK before sending the
next (no pipelining). Prints msg/s, p50/p99 ACK latency (send to ACK, as the sender sees it) and
the engine's ratio to both ceilings. `--store-dir` picks where the SQLite
file lives: its fsync latency bounds the single-connection rate (every ACK waits for a real commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ACK = (b"\x0bMSH|^~\\&|EMPI|NBWJW|HIS|NBDYYY|20240301101523||ACK^A01^ACK|1|P|2.5.1\r"
       b"MSA|AA|1|\r\x1c\r")


def adt_parts() -> tuple[bytes, bytes]:
    """A ~1.5 KB ADT^A01 (original mode) split around MSH-10, so each send has its own control id."""
    head = b"MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523+0800||ADT^A01^ADT_A01|"
    tail = (b"|P|2.5.1|||||CHN|UNICODE UTF-8\r"
            b"EVN|A01|20240301101500+0800|||0451^CHEN^ZHIMING^^^^^^NBDYYY\r"
            b"PID|1||0001234567^^^NBDYYY&1.2.156.112636.1.1&ISO^PI~330203198503120171^^^CHN^NNCHN||"
            + "王^建国^^^^^L~WANG^JIANGUO^^^^^A".encode() + b"||19850312|M|||"
            + "中山西路138号^3幢502室^宁波市^浙江省^315010^CHN^H^^330203".encode()
            + b"||^PRN^PH^^86^574^87123456~^PRN^CP^^86^^13805740123|||M||Z20240301001\r"
            b"NK1|1|" + "王^丽^^^^^L".encode() + b"|SPO^Spouse^HL70063|||^PRN^CP^^86^^13905740456\r"
            b"PV1|1|I|0301^0301-12^03^NBDYYY||||1023^LI^MING^^^^^^NBDYYY|||CAR||||1|||"
            b"1023^LI^MING^^^^^^NBDYYY|IP|V20240301001|||||||||||||||||||||||||20240301101500+0800\r"
            b"PV2|||I20.000^UNSTABLE ANGINA^ICD10CN\r"
            b"AL1|1|DA|Z88.0^PENICILLIN ALLERGY^ICD10CN|MO|RASH\r"
            b"DG1|1||I20.000^UNSTABLE ANGINA^ICD10CN||20240301|A\r"
            b"IN1|1|01^URBAN EMPLOYEE^NBYB|NBYB|NINGBO MEDICAL INSURANCE BUREAU\r")
    pad = 1500 - len(head) - len(tail) - 10
    tail += b"NTE|1||" + b"X" * max(0, pad - 8) + b"\r"
    return head, tail


# --- the ceiling: a bare MLLP echo server ---------------------------------------------------------


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\x1c\r")
            if end < 0:
                return
            self.buf = self.buf[end + 2:]
            self.transport.write(ACK)


async def _echo_server() -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


# --- the load generator ----------------------------------------------------------------------------


class _Sender(asyncio.Protocol):
    def __init__(self, n: int, head: bytes, tail: bytes, stats: dict[str, Any]) -> None:
        self.n, self.head, self.tail, self.stats = n, head, tail, stats
        self.i = 0
        self.sent_at = 0.0
        self.buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.send()

    def send(self) -> None:
        self.i += 1
        self.sent_at = time.perf_counter()
        cid = f"{self.stats['run']}-{self.n}-{self.i}".encode()
        self.transport.write(b"\x0b" + self.head + cid + self.tail + b"\x1c\r")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\x1c\r")
        if end < 0:
            return
        ack, self.buf = self.buf[:end], self.buf[end + 2:]
        now = time.perf_counter()
        if b"MSA|AA|" not in ack:
            self.stats["errors"] += 1
        if self.stats["measuring"]:
            self.stats["latencies"].append(now - self.sent_at)
        if not self.stats["stop"]:
            self.send()


async def _load(port: int, connections: int, seconds: float, run: str) -> dict[str, Any]:
    head, tail = adt_parts()
    stats: dict[str, Any] = {"latencies": [], "errors": 0, "measuring": False, "stop": False, "run": run}
    loop = asyncio.get_running_loop()
    transports = []
    for n in range(connections):
        tr, _ = await loop.create_connection(lambda n=n: _Sender(n, head, tail, stats), "127.0.0.1", port)
        transports.append(tr)
    await asyncio.sleep(min(1.0, seconds / 4))  # warm-up
    stats["measuring"] = True
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stats["measuring"] = False
    elapsed = time.perf_counter() - start
    stats["stop"] = True
    await asyncio.sleep(0.2)
    for tr in transports:
        tr.close()
    lat = sorted(stats["latencies"])
    return {"msgs_per_s": len(lat) / elapsed, "count": len(lat), "errors": stats["errors"],
            "p50_ms": statistics.median(lat) * 1000 if lat else 0.0,
            "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else 0.0}


# --- orchestration -----------------------------------------------------------------------------------


def engine_config(store: str) -> str:
    """The benched engine's config: one MLLP channel, no routes, no admin API; `store` is the YAML flow
    mapping of `engine.store` (bench/pg_ingest.py and bench/encryption.py use it too)."""
    return f"""
engine:
  store: {store}
  admin: {{enabled: false}}
  log: {{format: json, level: warning}}
channels:
  - name: bench
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
"""


def _spawn_engine(store_dir: Path) -> tuple[subprocess.Popen[str], int]:
    config = store_dir / "bench.yaml"
    config.write_text(engine_config(f"{{path: {store_dir / 'bench.db'}}}"), encoding="utf-8")
    # level warning hides the "mllp listening" line: find the port from a probe config instead.
    return _spawn([sys.executable, "-c", _ENGINE_SNIPPET, str(config)])


_ENGINE_SNIPPET = """
import asyncio, os, sys
from engine.commands.run import tune_interpreter
tune_interpreter()  # the same process settings as `yonglink run`
if os.environ.get("BENCH_SWITCH_INTERVAL"):  # GIL hand-off experiment (see the report in the docstring)
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
from engine.config import load_config
from engine.logs import configure_logging
from engine.runtime import Engine
config = load_config(sys.argv[1])
configure_logging(config.engine.log)
async def main():
    engine = Engine(config)
    task = asyncio.ensure_future(engine.run_until_signalled())
    while engine.channels['bench'].inbound is None or engine.channels['bench'].state.value != 'started':
        await asyncio.sleep(0.05)
    print(engine.channels['bench'].inbound.port_bound, flush=True)
    await task
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def terminate(*procs: subprocess.Popen[str]) -> None:
    """SIGTERM each benchmark process (the engine stops cleanly), SIGKILL what is still up after 15 s."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _spawn_echo() -> tuple[subprocess.Popen[str], int]:
    return _spawn([sys.executable, __file__, "--echo-server"])


def _spawn(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
    """Start a server process (with the repo importable) that prints its port on the first line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    line = proc.stdout.readline() if proc.stdout else ""
    return proc, int(line)


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    return float(a["msgs_per_s"] / b["msgs_per_s"]) if b["msgs_per_s"] else 0.0


def _drive(port: int, connections: int, seconds: float, run: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--load", str(port), str(connections), str(seconds), run],
                         check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--store-dir", help="directory for the SQLite store (default: a temp dir in ./var)")
    parser.add_argument("--switch-interval", type=float,
                        help="sys.setswitchinterval() for the engine process (GIL hand-off experiment)")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    runner = _runner()
    if args.echo_server:
        runner(_echo_server())
        return 0
    if args.load:
        port, conns, seconds, run = args.load
        print(json.dumps(runner(_load(int(port), int(conns), float(seconds), run))))
        return 0

    base = Path(args.store_dir) if args.store_dir else REPO / "var"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-mllp-") as tmp:
        if args.switch_interval:
            os.environ["BENCH_SWITCH_INTERVAL"] = str(args.switch_interval)
        engine, engine_port = _spawn_engine(Path(tmp))
        echo, echo_port = _spawn_echo()
        bare, bare_port = _spawn([sys.executable, str(REPO / "bench" / "_bare_durable.py"),
                                    str(Path(tmp) / "bare.db")])
        try:
            swi = f"; engine switch interval {args.switch_interval}s" if args.switch_interval else ""
            print(f"store: {tmp} (synchronous=FULL){swi}; message {sum(map(len, adt_parts())) + 8} bytes; "
                  f"{args.seconds:g}s per run; cpus: {os.cpu_count()}")
            print("bare+commit: bench/_bare_durable.py, a bare server that only commits each frame"
                  " (same table, WAL, FULL) before a fixed ACK: the store's ceiling")
            print(f"{'conns':>5} | {'engine msg/s':>12} {'p50 ms':>7} {'p99 ms':>7} | "
                  f"{'bare+commit':>11} {'p99 ms':>7} | {'echo msg/s':>10} {'p99 ms':>7} | "
                  "engine/bare engine/echo")
            for conns in (int(c) for c in args.connections.split(",")):
                eng = _drive(engine_port, conns, args.seconds, f"e{conns}")
                store = _drive(bare_port, conns, args.seconds, f"b{conns}")
                ceil = _drive(echo_port, conns, args.seconds, f"c{conns}")
                errors = f"  ({eng['errors']} non-AA!)" if eng["errors"] else ""
                print(f"{conns:>5} | {eng['msgs_per_s']:>12,.0f} {eng['p50_ms']:>7.2f} "
                      f"{eng['p99_ms']:>7.2f} | {store['msgs_per_s']:>11,.0f} {store['p99_ms']:>7.2f} | "
                      f"{ceil['msgs_per_s']:>10,.0f} {ceil['p99_ms']:>7.2f} | "
                      f"{_ratio(eng, store):>11.2f} {_ratio(eng, ceil):>11.2f}{errors}", flush=True)
        finally:
            terminate(engine, echo, bare)
    return 0


def _runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:
        return asyncio.run


if __name__ == "__main__":
    sys.exit(main())
