"""Benchmark: the isolation-zone connectors (#14), each against a bare baseline measured in the same run.

1. Drop-directory intake: FILES files of PER_FILE ADT^A04 messages dropped before the engine starts;
   time until every file is in done/ (messages committed, files moved). Baseline: a bare loop that reads
   each file, commits its messages as rows in one SQLite transaction (WAL, synchronous=FULL, as the
   store) and renames it with a directory fsync — the disk's cost per file without any parsing.
2. Export: RECORDS person records collected by an export destination, then one period written (NDJSON
   and CSV). Baseline: the same NDJSON bytes written with one write + fsync + rename.

    .venv/bin/python bench/isolation_zone.py [--files 200] [--per-file 50] [--records 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from channels.export import records  # noqa: E402
from channels.export.outbound import ExportOutbound  # noqa: E402
from engine.config import parse_config  # noqa: E402
from engine.runtime import Engine  # noqa: E402

BATCH = (ROOT / "tests" / "samples" / "batch_adt_a04_fhs.hl7").read_bytes()
PERSON = orjson.loads((ROOT / "tests" / "samples" / "records" / "person.json").read_bytes())


def batch_file(n: int, per_file: int) -> bytes:
    msg = BATCH.split(b"MSH|")[1].rsplit(b"BTS|", 1)[0]
    out = []
    for i in range(per_file):
        fields = (b"MSH|" + msg).split(b"|")
        fields[9] = f"B{n:05d}-{i:04d}".encode()
        out.append(b"|".join(fields))
    return b"".join(out)


def drop(directory: Path, files: int, per_file: int) -> None:
    directory.mkdir(parents=True)
    for n in range(files):
        (directory / f"f{n:05d}.hl7").write_bytes(batch_file(n, per_file))


def bare_intake(directory: Path, db: Path) -> float:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, raw BLOB)")
    done = directory / "done"
    done.mkdir()
    start = time.perf_counter()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        raw = path.read_bytes()
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO m (raw) VALUES (?)", [(b"MSH|" + m,) for m in raw.split(b"MSH|")[1:]])
        conn.execute("COMMIT")
        os.replace(path, done / path.name)
        fd = os.open(done, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


async def engine_intake(tmp: Path, files: int, per_file: int) -> float:
    directory = tmp / "drop"
    drop(directory, files, per_file)
    config = parse_config(textwrap.dedent(f"""
        engine:
          store: {{path: {tmp}/intake.db}}
          admin: {{enabled: false}}
          log: {{level: warning}}
        channels:
          - {{name: drop, type: file, file: {{dirs: ["{directory}"], poll_interval: 0.05s}}}}
        """), file=tmp / "config.yaml")
    engine = Engine(config)
    start = time.perf_counter()
    await engine.start()
    done = directory / "done"
    while sum(1 for _ in done.iterdir()) < files:  # noqa: ASYNC110 - polling the directory is the point
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    await engine.stop()
    return elapsed


async def engine_export(tmp: Path, n: int, fmt: str) -> tuple[float, float, int]:
    out = tmp / f"zone-{fmt}"
    config = parse_config(textwrap.dedent(f"""
        engine:
          store: {{path: {tmp}/export-{fmt}.db}}
          admin: {{enabled: false}}
          log: {{level: warning}}
        destinations:
          - {{name: zone, type: export, export: {{dir: "{out}", every: 1h, format: {fmt}}}}}
        """), file=tmp / "config.yaml")
    engine = Engine(config)
    await engine.start()
    outbound = engine.delivery.workers["zone"].outbound
    assert isinstance(outbound, ExportOutbound)
    rows = [records.Collected(f"d{i}", "person", "", orjson.dumps({**PERSON, "patient_id": f"P{i}"}))
            for i in range(n)]
    start = time.perf_counter()
    for i in range(0, n, 256):  # as the delivery worker hands them over: batches of 256
        chunk = rows[i:i + 256]
        await engine.store.write(lambda c, chunk=chunk: records.collect(c, "zone", chunk, time.time()))
    collected = time.perf_counter() - start
    start = time.perf_counter()
    written = await outbound.exporter.export_due(time.time() + 3700)
    elapsed = time.perf_counter() - start
    size = sum((out / f.file).stat().st_size for p in written for f in p.files)
    await engine.stop()
    return collected, elapsed, size


def bare_export(tmp: Path, n: int) -> float:
    data = b"".join(orjson.dumps({**PERSON, "patient_id": f"P{i}"}) + b"\n" for i in range(n))
    start = time.perf_counter()
    target = tmp / "bare.ndjson"
    with open(tmp / ".bare.tmp", "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp / ".bare.tmp", target)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--per-file", type=int, default=50)
    parser.add_argument("--records", type=int, default=100_000)
    args, _ = parser.parse_known_args()
    msgs = args.files * args.per_file
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        drop(tmp / "bare", args.files, args.per_file)
        bare = bare_intake(tmp / "bare", tmp / "bare.db")
        eng = asyncio.run(engine_intake(tmp, args.files, args.per_file))
        print(f"intake  {args.files} files x {args.per_file} msgs: engine {eng:.2f}s ="
              f" {args.files / eng:,.0f} files/s, {msgs / eng:,.0f} msgs/s"
              f" | bare commit+move {bare:.2f}s = {msgs / bare:,.0f} msgs/s"
              f" | ratio {bare / eng:.2f}")
        base = bare_export(tmp, args.records)
        for fmt in ("ndjson", "csv"):
            collected, wrote, size = asyncio.run(engine_export(tmp, args.records, fmt))
            print(f"export  {args.records:,} records {fmt}: collect {args.records / collected:,.0f} rec/s,"
                  f" write period {wrote:.2f}s = {args.records / wrote:,.0f} rec/s ({size / 1e6:.1f} MB)"
                  f" | bare ndjson write {base:.2f}s | ratio {base / wrote:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
