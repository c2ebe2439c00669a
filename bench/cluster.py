"""Cluster benchmark: 1, 2 and 3 engine nodes on one private PostgreSQL, beside pgbench on the same server.

    .venv/bin/python bench/cluster.py [--seconds 5] [--connections 24] [--nodes 1,2,3] [--modes ingest,e2e]

For each node count and mode, in one run on one private PostgreSQL (tests/support/postgres.py: initdb in
a temp dir, `fsync` and `synchronous_commit` on) and a fresh database each time:

- the engine: N `yonglink run` processes on one config (tests/support/cluster.py's config: each node its
  own MLLP/admin ports), loaded directly (no balancer: HAProxy would take a share of the same 2 cores) by
  bench/mllp_ingest.py's load generator, `--connections` split evenly over the nodes, each connection
  one 1.5 KB ADT^A01 in flight;
  - `ingest`: no routes, so each message is one committed row before its AA;
  - `e2e`: MLLP → the shipped person route → an `http` destination (bench/end_to_end.py's sink, which
    counts distinct Idempotency-Keys): msg/s ACKed during the load, delivered msg/s from the first send
    to the last delivery;
- pgbench on the same server right after, running the engine's statements (`pgbench_script` below: the
  engine's own ingest INSERT, plus for e2e the outcome, delivery and `sent` writes, in the engine's
  three commits) with as many clients as the engine had connections, once with one message per
  transaction and once with PGBENCH_GROUP: the rate the database itself sustains for the same writes
  without the engine;
- CPU seconds per 1,000 messages of each node (utime + stime from /proc/<pid>/stat over the run,
  delivery included for e2e) and of PostgreSQL (every server process), so the scaling on a machine with
  more cores can be computed: msg/s per core ~ 1000 / cpu_s_per_1000.

Then a single SQLite node with the same config but `store: {path: ...}` (synchronous=FULL), for the
SQLite-vs-PostgreSQL line. Prints one table. On a 2-core box every process shares the same two cores:
read the CPU columns, not the msg/s of 3 nodes, for scaling.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "support"))

from cluster import POSTGRES_STORE, SQLITE_STORE, Node, render_config  # noqa: E402
from engine_process import run_engine_logged  # noqa: E402

if TYPE_CHECKING:
    from postgres import PrivatePostgres

TICKS = os.sysconf("SC_CLK_TCK")
RAW_BYTES = 1500
"""The size of bench/mllp_ingest.py's ADT^A01 (the `raw` column pgbench writes)."""

# The engine's writes for one message, as pgbench statements on the engine's own tables (the database the
# engine just used, so the same indexes and constraints), one message per script run:
# ingest: the engine's own statement, engine/store/pg_inserts.py `_statement(1)` (claim the dedupe key in
# `dedupe_keys`, insert the `messages` row; one commit), its parameters filled with pgbench expressions.
# e2e: that, then engine/store/messages.py `record_outcomes` (UPDATE messages, INSERT results) with
# engine/delivery/outbox.py `enqueue_many` (INSERT deliveries with the record as payload) in a second
# commit, and `mark_sent_many` (INSERT delivery_attempts, UPDATE deliveries) in a third: the engine's
# three commits per message (each group-committed across messages in the engine, one message each here).
_ID = "'pgb' || :client_id || '-' || :n"
_DID = "'pgd' || :client_id || '-' || :n"
_NOW = "extract(epoch from clock_timestamp())"
_RECORD = ('{"envelope":{"dataset":"person","dataset_version":"1.0","source_org":"NBDYYY"},'
           '"name":"SEQ000001","sex_code":"1","birth_date":"19850312","patient_id":"0001234567"}')
PGBENCH_GROUP = 16
"""Messages per transaction of the grouped pgbench run: the engine's writer commits whatever arrived
together (up to engine/store/postgres.py DEFAULT_MAX_BATCH), so one message per transaction is pgbench's
floor and 16 a group the engine reaches with 24 connections; neither is its exact shape."""
_WINDOW = 86400.0
"""engine.store.dedupe_window's default (24 h)."""


def _pgbench_ingest() -> str:
    """engine/store/pg_inserts.py's INSERT for one message, `?` by `?` (`InsertPlan.rows` order, then the
    bare key, the window's start, the content hash, and the window)."""
    from engine.store import pg_inserts

    key = "'NBDYYY' || chr(31) || 'pgb' || :client_id || '-' || :n"
    values = [_ID, "'bench'", _NOW, "'127.0.0.1:40000'", "'x-application/hl7-v2+er7'", "NULL", "'HIS'",
              "'NBDYYY'", "'pgb' || :client_id || '-' || :n", "'ADT^A01'", f"{key} || chr(31) || 'h'",
              "'received'", "NULL", "NULL", "NULL", f"convert_to(repeat('x', {RAW_BYTES}), 'UTF8')", key,
              f"{_NOW} - {_WINDOW}", "'h'", str(_WINDOW)]
    parts = pg_inserts._statement(1).split("?")
    if len(parts) != len(values) + 1:
        raise RuntimeError(f"engine/store/pg_inserts.py's statement has {len(parts) - 1} parameters, "
                           f"this bench fills {len(values)}: update bench/cluster.py")
    return parts[0] + "".join(f"({v}){rest}" for v, rest in zip(values, parts[1:], strict=True)) + ";\n"


_PGBENCH_OUTCOME = f"""\
UPDATE messages SET state = 'mapped', error = NULL, processed_at = {_NOW} \
WHERE id = {_ID} AND state = 'received';
INSERT INTO results (message_id, route_id, dataset, record, filtered, error, created_at) \
VALUES ({_ID}, 'adt_person', 'person', '{_RECORD}', NULL, NULL, {_NOW});
INSERT INTO deliveries (id, message_id, destination, route_id, dataset, channel, state, attempts, \
next_attempt_at, created_at, order_value, content_type, payload) VALUES ({_DID}, {_ID}, 'sink', \
'adt_person', 'person', 'lab', 'queued', 0, {_NOW}, {_NOW}, NULL, 'application/json', \
convert_to('{_RECORD}', 'UTF8'));
"""
_PGBENCH_SENT = f"""\
INSERT INTO delivery_attempts (delivery_id, attempt, at, result, response) \
VALUES ({_DID}, 1, {_NOW}, 'sent', '{{"ok": true}}');
UPDATE deliveries SET state = 'sent', attempts = 1, last_attempt_at = {_NOW}, \
first_attempt_at = coalesce(first_attempt_at, {_NOW}), last_response = '{{"ok": true}}', last_error = NULL \
WHERE id = {_DID} AND state = 'queued';
"""


def pgbench_script(mode: str, group: int) -> str:
    """The pgbench script for `group` messages per transaction: each of the engine's commits (ingest; for
    e2e also outcome + enqueue, then sent) covers `group` messages, as the engine's group commit does."""

    def each(template: str) -> str:
        return "".join(re.sub(r":n(?!\w)", f":n{k}", template) for k in range(group))

    out = [f"\\set n{k} random(1, 1000000000000)\n" for k in range(group)]
    blocks = [_pgbench_ingest()] + ([_PGBENCH_OUTCOME, _PGBENCH_SENT] if mode == "e2e" else [])
    for block in blocks:
        out += ["BEGIN;\n", each(block), "COMMIT;\n"]
    return "".join(out)


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (/proc/<pid>/stat fields 14 and 15), in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds of every PostgreSQL process of the server at `data_dir` (postmaster and children),
    including what exited children left to the postmaster (cutime + cstime)."""
    try:
        postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid, ppid = int(proc.name), int(fields[1])
        if pid == postmaster:
            total += sum(int(f) for f in fields[11:15]) / TICKS
        elif ppid == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


@dataclass
class Row:
    store: str
    nodes: int
    mode: str
    acked_per_s: float = 0.0
    p99_ms: float = 0.0
    delivered_per_s: float = 0.0
    errors: int = 0
    node_cpu: list[float] = field(default_factory=list)
    """CPU seconds per 1,000 messages, per node."""
    pg_cpu: float = 0.0
    pgbench_one: float = 0.0
    """pgbench msg/s, one message per transaction."""
    pgbench_group: float = 0.0
    """pgbench msg/s, PGBENCH_GROUP messages per transaction (the engine's group commit)."""
    note: str = ""


def _body(mode: str, sink_port: int) -> str:
    if mode == "ingest":
        return ""
    return f"""
destinations:
  - name: sink
    type: http
    routes: [adt_person]
    concurrency: 16
    retry: {{initial_delay: 0.5, max_delay: 5s}}
    http: {{url: "http://127.0.0.1:{sink_port}/in"}}
routes: [{REPO / 'mappings' / 'adt_person.yaml'}]
"""


def run_engine(tmp: Path, *, store: str, nodes: int, mode: str, connections: int, seconds: float,
               env: dict[str, str], sink_url: str, sink_port: int, pg: PrivatePostgres | None) -> Row:
    """One measurement: start `nodes` nodes, load them, wait for delivery (e2e), stop them."""
    ingest = _module("mllp_ingest")
    root = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{mode}-{nodes}-"))
    config = root / "cluster.yaml"
    config.write_text(render_config(store=store, body=_body(mode, sink_port)), encoding="utf-8")
    members = [Node(f"node{i + 1}", root / f"node{i + 1}") for i in range(nodes)]
    row = Row("postgres" if pg else "sqlite", nodes, mode)
    started = []
    try:
        for node in members:
            node.root.mkdir(parents=True)
            node.proc, _ = run_engine_logged(config, node.log_file, env={**env, **node.env})
            started.append(node)
        delivered_before = _get(f"{sink_url}/count")["delivered"] if mode == "e2e" else 0
        cpu0 = [cpu_seconds(n.proc.pid) for n in members if n.proc]
        pg0 = postgres_cpu(pg.data) if pg else 0.0
        start = time.time()
        shares = [connections // nodes + (1 if i < connections % nodes else 0) for i in range(nodes)]
        loads = [subprocess.Popen([sys.executable, str(REPO / "bench" / "mllp_ingest.py"), "--load",
                                   str(n.mllp_port), str(c), str(seconds), f"{mode}{nodes}{n.name}"],
                                  stdout=subprocess.PIPE, text=True)
                 for n, c in zip(members, shares, strict=True)]
        results = [json.loads(p.communicate()[0]) for p in loads]
        load_end = time.time()
        row.acked_per_s = sum(r["msgs_per_s"] for r in results)
        row.p99_ms = max(r["p99_ms"] for r in results)
        row.errors = sum(r["errors"] for r in results)
        total = row.acked_per_s * seconds  # the measured window; warm-up and tail messages add CPU below
        if mode == "e2e":
            last, stable = -1, time.time()
            while time.time() - stable < 3.0:
                count = _get(f"{sink_url}/count")["delivered"]
                if count != last:
                    last, stable = count, time.time()
                time.sleep(0.2)
            done = _get(f"{sink_url}/count")
            delivered = done["delivered"] - delivered_before
            row.delivered_per_s = delivered / max((done["last"] or load_end) - start, 1e-9)
            total = delivered
        else:
            total = _stored(pg, env, members) or total
        cpu1 = [cpu_seconds(n.proc.pid) for n in members if n.proc]
        row.node_cpu = [(b - a) * 1000 / max(total / nodes, 1) for a, b in zip(cpu0, cpu1, strict=True)]
        if pg:
            row.pg_cpu = (postgres_cpu(pg.data) - pg0) * 1000 / max(total, 1)
    finally:
        ingest.terminate(*(n.proc for n in started if n.proc))
    return row


def _stored(pg: PrivatePostgres | None, env: dict[str, str], members: list[Node]) -> int:
    """Messages the run stored (all, warm-up included: the CPU window covers them too)."""
    if pg is not None:
        import psycopg

        with psycopg.connect(env["YONGLINK_PG_DSN"]) as conn:
            found = conn.execute("SELECT count(*) FROM messages").fetchone()
            return int(found[0]) if found else 0
    import sqlite3

    count = 0
    for node in members:
        conn = sqlite3.connect(node.root / "node.db")
        count += conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        conn.close()
    return count


def pgbench(pg: PrivatePostgres, dsn: str, mode: str, clients: int, seconds: float, tmp: Path,
            group: int = 1) -> float:
    """Messages per second of pgbench running the engine's statements, `group` messages per transaction
    (see `pgbench_script`): pgbench's tps × `group`."""
    script = tmp / f"pgbench-{mode}-{group}.sql"
    script.write_text(pgbench_script(mode, group), encoding="utf-8")
    database = dsn.rsplit("/", 1)[1]
    done = subprocess.run([str(pg.bin / "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                           "yonglink", "-c", str(clients), "-j", "2", "-T", str(max(1, round(seconds))),
                           "-f", str(script), database], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2]) * group
    raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr[-1500:]}")


def _get(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds of load per run")
    parser.add_argument("--connections", type=int, default=24, help="MLLP connections, split over the nodes")
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--modes", default="ingest,e2e")
    parser.add_argument("--stores", default="postgres,sqlite", help="postgres (1-3 nodes), sqlite (1 node)")
    args = parser.parse_args()
    ingest = _module("mllp_ingest")
    modes = args.modes.split(",")
    base = REPO / "var"
    base.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    stores = args.stores.split(",")
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)
        pg = None
        if "postgres" in stores:
            from postgres import PrivatePostgres

            pg = PrivatePostgres()
        sink, sink_port = ingest._spawn([sys.executable, str(REPO / "bench" / "end_to_end.py"),
                                         "--sink", "0"])
        sink_url = f"http://127.0.0.1:{sink_port}"
        try:
            if pg is not None:
                pg.start()
                print(f"PostgreSQL {pg.bin.parent.name}, a private server (fsync on, synchronous_commit on)")
            print(f"{args.seconds:g}s load per run, {args.connections} MLLP connections split over the nodes;"
                  f" cpus {os.cpu_count()}; load average {os.getloadavg()[0]:.2f} at start", flush=True)
            for mode in modes:
                for nodes in (int(n) for n in args.nodes.split(",")) if pg is not None else ():
                    dsn = pg.create_database()
                    row = run_engine(tmp, store=POSTGRES_STORE, nodes=nodes, mode=mode,
                                     connections=args.connections, seconds=args.seconds,
                                     env={"YONGLINK_PG_DSN": dsn}, sink_url=sink_url, sink_port=sink_port,
                                     pg=pg)
                    row.pgbench_one = pgbench(pg, dsn, mode, args.connections, args.seconds, tmp)
                    row.pgbench_group = pgbench(pg, dsn, mode, args.connections, args.seconds, tmp,
                                                group=PGBENCH_GROUP)
                    rows.append(row)
                    _print_row(row, header=len(rows) == 1)
                    pg.drop_database(dsn)
                if "sqlite" in stores:
                    row = run_engine(tmp, store=SQLITE_STORE, nodes=1, mode=mode,
                                     connections=args.connections, seconds=args.seconds, env={},
                                     sink_url=sink_url, sink_port=sink_port, pg=None)
                    rows.append(row)
                    _print_row(row, header=len(rows) == 1)
        finally:
            ingest.terminate(sink)
            if pg is not None:
                pg.close()
    print(f"load average {os.getloadavg()[0]:.2f} at the end (2-core box: everything above shares them)")
    return 0


def _print_row(row: Row, *, header: bool) -> None:
    if header:
        print(f"{'store':<8} {'nodes':>5} {'mode':<6} | {'ACKed msg/s':>11} {'p99 ms':>7} | "
              f"{'delivered/s':>11} | {'node CPU s/1000 msgs':<20} | {'PG CPU s/1000':>13} | "
              f"{'pgbench 1/txn':>13} {f'{PGBENCH_GROUP}/txn':>8} | engine/pgbench {PGBENCH_GROUP}/txn",
              flush=True)
    cpu = " ".join(f"{c:.2f}" for c in row.node_cpu)
    delivered = f"{row.delivered_per_s:>11,.0f}" if row.mode == "e2e" else f"{'-':>11}"
    if row.pgbench_group:
        bench = (f"{row.pgbench_one:>13,.0f} {row.pgbench_group:>8,.0f} | "
                 f"{row.acked_per_s / row.pgbench_group:>14.2f}")
    else:
        bench = f"{'-':>13} {'-':>8} | {'-':>14}"
    pgcpu = f"{row.pg_cpu:>13.2f}" if row.store == "postgres" else f"{'-':>13}"
    errors = f"  ({row.errors} non-AA)" if row.errors else ""
    print(f"{row.store:<8} {row.nodes:>5} {row.mode:<6} | {row.acked_per_s:>11,.0f} {row.p99_ms:>7.1f} | "
          f"{delivered} | {cpu:<20} | {pgcpu} | {bench}{errors}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
