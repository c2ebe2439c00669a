"""The store's ceiling: the engine's own SQL for one message, run back to back on one connection.

    .venv/bin/python bench/store_ceiling.py [--seconds 4] [--store-dir DIR]

No network, no event loop, no GIL contention: one thread runs what the store writer runs per message,
in groups as the engine forms them, on the real schema (`engine.store.messages`, `engine.delivery.outbox`):

- ingest: `messages.InsertPlan` for a group of 1.5 KB ADT^A01 messages, committed with
  synchronous=FULL (what every ACK waits for);
- end to end: the same, plus what follows each message through the pipeline and delivery —
  `messages.record_outcomes` with a person record, `outbox.enqueue_many` with its payload, and
  `outbox.mark_sent_many` — in commits with synchronous=NORMAL, as the engine groups them.

Groups of 1, 16 and 32 stand for one sender, and for 32 senders whose messages split into two
alternating group commits (what bench/mllp_ingest.py sees). The engine cannot beat these rates on the
same disk; bench/mllp_ingest.py and bench/end_to_end.py are read against them.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from engine.delivery import outbox  # noqa: E402
from engine.store import messages, migrations  # noqa: E402
from engine.types import InboundMessage, MessageState, RouteResult  # noqa: E402

RAW = (REPO / "tests" / "samples" / "adt_a01_v251_utf8.hl7").read_bytes().replace(b"\n", b"\r")[:1500]
RECORD = {"patient_id": "0001234567", "name": "王建国", "sex_code": "1", "birth_date": "1985-03-12",
          "id_type_code": "01", "id_number": "330203198503120171", "phone": "13805740123",
          "address": "宁波市海曙区中山西路138号", "envelope": {"dataset": "person", "org": "NBDYYY"}}


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    migrations.apply_sqlite(conn)
    return conn


def _group(n: int, start: int) -> list[InboundMessage]:
    now = time.time()
    return [InboundMessage(channel="bench", raw=RAW, content_type="application/hl7-v2", received_at=now,
                           peer="127.0.0.1:1", sending_application="HIS", sending_facility="NBDYYY",
                           control_id=f"c{i % 32}-{i}", message_type="ADT^A01",
                           dedupe_key=f"NBDYYY|c{i % 32}-{i}") for i in range(start, start + n)]


def _run(path: Path, group: int, seconds: float, end_to_end: bool) -> float:
    conn = _connect(path)
    payload = orjson.dumps(RECORD)
    done, start, deadline = 0, time.perf_counter(), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        plan = messages.InsertPlan(_group(group, done), dedupe_window=86400)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        plan.run(conn)
        conn.execute("COMMIT")
        if end_to_end:
            ids = [row[0] for row in plan.rows]
            now = time.time()
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            messages.record_outcomes(conn, [(i, MessageState.MAPPED, None, [RouteResult(
                route_id="adt_person", dataset="person", record=RECORD)]) for i in ids], now=now)
            pending = outbox.enqueue_many(conn, [outbox.NewDelivery(
                message_id=i, destination="sink", route_id="adt_person", dataset="person", channel="bench",
                payload=payload, content_type="application/json", order_value=None) for i in ids], now=now)
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            outbox.mark_sent_many(conn, [(p.id, 1, "200") for p in pending], now=now)
            conn.execute("COMMIT")
        done += group
    conn.close()
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--store-dir", help="directory for the SQLite files (default: a temp dir in ./var)")
    args = parser.parse_args()
    base = Path(args.store_dir) if args.store_dir else REPO / "var"
    base.mkdir(parents=True, exist_ok=True)
    print("store ceiling: the engine's SQL per message, one thread, synchronous=FULL before each 'ACK'")
    print(f"{'group':>5} | {'ingest msg/s':>12} | {'end to end msg/s':>16}")
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-store-") as tmp:
        for group in (1, 16, 32):
            ingest = _run(Path(tmp) / f"i{group}.db", group, args.seconds, end_to_end=False)
            e2e = _run(Path(tmp) / f"e{group}.db", group, args.seconds, end_to_end=True)
            print(f"{group:>5} | {ingest:>12,.0f} | {e2e:>16,.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
