"""MLLP ingest on one engine node, SQLite beside PostgreSQL, in the same run (issue #13 item 1).

    .venv/bin/python bench/pg_ingest.py [--seconds 5] [--connections 1,8,32]

The engine (`engine.store.backend` sqlite, then postgres on a private server from
tests/support/postgres.py with fsync and synchronous_commit on) takes 1.5 KB ADT^A01 messages over MLLP,
each connection waiting for its AA before the next (bench/mllp_ingest.py's load generator and engine
launcher). Prints msg/s and p50/p99 ACK latency per backend and the PostgreSQL/SQLite ratio. The cluster
numbers (several nodes, pgbench beside them) are bench/cluster.py's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import mllp_ingest  # noqa: E402
from pg_driver import load_postgres  # noqa: E402


def measure(store: str, workdir: Path, connections: list[int], seconds: float) -> list[dict[str, float]]:
    config = workdir / "bench.yaml"
    config.write_text(mllp_ingest.engine_config(store), encoding="utf-8")
    proc, port = mllp_ingest._spawn([sys.executable, "-c", mllp_ingest._ENGINE_SNIPPET, str(config)])
    try:
        return [mllp_ingest._drive(port, n, seconds, f"{workdir.name}-{n}") for n in connections]
    finally:
        mllp_ingest.terminate(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", default="1,8,32")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]
    server = load_postgres().PrivatePostgres()
    try:
        server.start()
        dsn = server.create_database("bench")
        with tempfile.TemporaryDirectory(prefix="bench-pg-ingest-", dir=REPO / "var"
                                         if (REPO / "var").is_dir() else None) as tmp:
            sqlite_dir, pg_dir = Path(tmp) / "sqlite", Path(tmp) / "postgres"
            sqlite_dir.mkdir()
            pg_dir.mkdir()
            lite = measure(f"{{path: {sqlite_dir / 'bench.db'}}}", sqlite_dir, connections, args.seconds)
            pg = measure(f"{{backend: postgres, dsn: '{dsn}'}}", pg_dir, connections, args.seconds)
    finally:
        server.close()
    print(f"MLLP ingest, one node, {args.seconds:g} s per run; PostgreSQL {server.bin.parent.name} private,"
          " synchronous_commit=on")
    print("conns | sqlite msg/s  p50 ms  p99 ms | postgres msg/s  p50 ms  p99 ms | pg/sqlite")
    for n, a, b in zip(connections, lite, pg, strict=True):
        ratio = b["msgs_per_s"] / a["msgs_per_s"] if a["msgs_per_s"] else 0.0
        print(f"{n:>5} | {a['msgs_per_s']:>12,.0f} {a['p50_ms']:>7.2f} {a['p99_ms']:>7.2f} |"
              f" {b['msgs_per_s']:>14,.0f} {b['p50_ms']:>7.2f} {b['p99_ms']:>7.2f} | {ratio:>9.2f}")
        if a["errors"] or b["errors"]:
            print(f"      errors: sqlite {a['errors']}, postgres {b['errors']} (answers other than AA)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
