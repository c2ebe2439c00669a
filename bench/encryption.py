"""Payloads at rest: what `engine.store.encryption` costs per message, against the same engine without it.

    .venv/bin/python bench/encryption.py [--seconds 5] [--connections 1,32] [--rounds 2] [--store-dir DIR]

Three measurements, each with encryption off and on in the same run (runs alternate off/on, `--rounds`
times, in alternating order, and the median counts, so drift on a shared machine hits both sides alike):

1. the cipher alone, in this process: µs to seal and to open one 1.5 KB ADT^A01 (AES-256-GCM);
2. MLLP ingest: the engine of bench/mllp_ingest.py (commit before ACK, no routes), msg/s and p99 per
   connection count; with encryption on, every raw message is sealed on the event loop before its insert;
3. end to end: bench/end_to_end.py's engine (ADT^A01 -> person record -> HTTP sink, 32 connections):
   ACKed ingest and sink-confirmed delivery rates; with encryption on, the raw message, the mapped record
   and the delivery payload are each sealed.

Prints each rate with encryption on as a ratio of the rate with it off (1.00: no measurable cost), and the
engine process's CPU time per stored (or delivered) message, off and on: on a machine shared with other
work the rates swing by tens of percent between identical runs, while CPU per message is steadier.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"bench/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ingest = _module("mllp_ingest")
e2e = _module("end_to_end")


def _key_file(tmp: Path) -> Path:
    from engine.store.cipher import key_text, new_key

    path = tmp / "store.key"
    path.write_text(key_text(new_key()), encoding="ascii")
    return path


def _with_encryption(config: Path, key: Path | None) -> None:
    """Add `encryption: {key_file: ...}` to the config's `store:` line (or leave it without)."""
    if key is None:
        return
    text = config.read_text(encoding="utf-8")
    start = text.index("  store: {path: ")
    end = text.index("}", start)
    config.write_text(text[:end] + f", encryption: {{key_file: {key}}}" + text[end:], encoding="utf-8")


def cipher_cost() -> tuple[float, float]:
    """µs per seal and per open of one 1.5 KB message."""
    from engine.store.cipher import Keyring, new_key

    ring = Keyring(new_key())
    head, tail = ingest.adt_parts()
    raw = head + b"C1" + tail
    sealed = ring.seal(raw)
    n = 20_000
    seal = min(timeit.repeat(lambda: ring.seal(raw), number=n, repeat=3)) / n * 1e6
    opened = min(timeit.repeat(lambda: ring.unseal(sealed), number=n, repeat=3)) / n * 1e6
    return seal, opened


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stored(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])


def ingest_run(tmp: Path, key: Path | None, conns: int, seconds: float, run: str) -> dict[str, Any]:
    tmp.mkdir()
    config = tmp / "bench.yaml"
    config.write_text(ingest.engine_config(f"{{path: {tmp / 'bench.db'}}}"), encoding="utf-8")
    _with_encryption(config, key)
    engine, port = ingest._spawn([sys.executable, "-c", ingest._ENGINE_SNIPPET, str(config)])
    try:
        cpu0 = _cpu_seconds(engine.pid)
        result: dict[str, Any] = ingest._drive(port, conns, seconds, run)
        cpu = _cpu_seconds(engine.pid) - cpu0
    finally:
        ingest.terminate(engine)
    _check_sealed(tmp / "bench.db", key is not None)
    result["cpu_us"] = cpu / max(_stored(tmp / "bench.db"), 1) * 1e6
    return result


def e2e_run(tmp: Path, key: Path | None, seconds: float, run: str) -> dict[str, float]:
    tmp.mkdir()
    sink, sink_port = ingest._spawn([sys.executable, str(REPO / "bench" / "end_to_end.py"), "--sink", "0"])
    config = e2e._write_config(tmp, sink_port, "person")
    _with_encryption(config, key)
    engine, port = ingest._spawn([sys.executable, "-c", ingest._ENGINE_SNIPPET, str(config)])
    sink_url = f"http://127.0.0.1:{sink_port}"
    try:
        cpu0 = _cpu_seconds(engine.pid)
        start = time.time()
        load = ingest._drive(port, 32, seconds, run)
        last, stable_since = -1, time.time()
        while time.time() - stable_since < 2.0:
            count = e2e._get(f"{sink_url}/count")["delivered"]
            if count != last:
                last, stable_since = count, time.time()
            time.sleep(0.2)
        done = e2e._get(f"{sink_url}/count")
        elapsed = max((done["last"] or time.time()) - start, 1e-9)
        cpu = _cpu_seconds(engine.pid) - cpu0
    finally:
        ingest.terminate(engine, sink)
    _check_sealed(tmp / "bench.db", key is not None)
    return {"ingest": load["msgs_per_s"], "delivered": done["delivered"] / elapsed,
            "p99_ms": load["p99_ms"], "errors": load["errors"],
            "cpu_us": cpu / max(done["delivered"], 1) * 1e6}


def _check_sealed(db: Path, sealed: bool) -> None:
    """The run measured what it says: with encryption on every stored raw message is sealed."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        n, sealed_rows = conn.execute("SELECT count(*), count(*) FILTER (WHERE substr(raw, 1, 4) ="
                                      " x'00594c4b') FROM messages").fetchone()  # b"\x00YLK"
    if (sealed and sealed_rows != n) or (not sealed and sealed_rows):
        raise SystemExit(f"encryption {'on' if sealed else 'off'} but {sealed_rows} of {n} rows sealed")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _order(round_: int) -> tuple[bool, bool]:
    """Off then on, on then off, ...: neither side always runs second (after the other's files)."""
    return (False, True) if round_ % 2 == 0 else (True, False)


def _row(*cells: Any) -> str:
    widths = (12, 5, 9, 7, 7, 9, 7, 7, 5, 5, 7)
    text = [f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
    return f"{text[0]} {text[1]} | {' '.join(text[2:5])} | {' '.join(text[5:8])} | {' '.join(text[8:])}"


def _figures(off: float, on: float, cpu_off: float = 0.0, cpu_on: float = 0.0, p99_off: float | None = None,
             p99_on: float | None = None) -> list[str]:
    """The cells of one row: rates, p99s and CPU off and on, then the ratios and the CPU difference."""
    def cpu(v: float) -> str:
        return f"{v:.0f}" if cpu_off else ""

    def p99(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}"

    return [f"{off:,.0f}", p99(p99_off), cpu(cpu_off), f"{on:,.0f}", p99(p99_on), cpu(cpu_on),
            f"{on / off:.2f}" if off else "", f"{cpu_on / cpu_off:.2f}" if cpu_off else "",
            f"{cpu_on - cpu_off:+.1f}" if cpu_off else ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--connections", default="1,32", help="MLLP ingest connection counts")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs per measurement (median)")
    parser.add_argument("--e2e-seconds", type=float, default=8.0, help="seconds of load per end-to-end run")
    parser.add_argument("--store-dir", help="directory for the SQLite stores (default: a temp dir in ./var)")
    parser.add_argument("--no-e2e", action="store_true", help="MLLP ingest only")
    args = parser.parse_args()

    seal_us, open_us = cipher_cost()
    print(f"cipher alone: seal {seal_us:.2f} µs, open {open_us:.2f} µs per 1.5 KB message "
          f"(AES-256-GCM, cryptography); cpus {os.cpu_count()}; {args.rounds} off/on rounds, medians")
    base = Path(args.store_dir) if args.store_dir else REPO / "var"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-enc-") as tmp_name:
        tmp = Path(tmp_name)
        key = _key_file(tmp)
        n = 0
        print("rate: msg/s, on/off (1.00 = no cost); CPU: engine process CPU µs per stored message, on/off"
              " and the difference: steadier than rates when other work shares the machine")
        print(_row("MLLP ingest", "conns", "off msg/s", "p99 ms", "CPU µs", "on msg/s", "p99 ms", "CPU µs",
                   "rate", "CPU", "+CPU µs"))
        for conns in (int(c) for c in args.connections.split(",") if c):  # --connections "": e2e only
            runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            for r in range(args.rounds):
                for on in _order(r):
                    n += 1
                    runs[on].append(ingest_run(tmp / f"i{n}", key if on else None, conns, args.seconds,
                                               f"i{n}"))
            off, on_ = ({k: _median([r[k] for r in runs[side]]) for k in ("msgs_per_s", "p99_ms", "cpu_us")}
                        for side in (False, True))
            errors = sum(r["errors"] for rs in runs.values() for r in rs)
            print(_row("", conns, *_figures(off["msgs_per_s"], on_["msgs_per_s"], off["cpu_us"],
                                            on_["cpu_us"], off["p99_ms"], on_["p99_ms"]))
                  + (f"  ({errors} non-AA!)" if errors else ""), flush=True)
        if args.no_e2e:
            return 0
        e2e_runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for r in range(args.rounds):
            for on in _order(r):
                n += 1
                e2e_runs[on].append(e2e_run(tmp / f"e{n}", key if on else None, args.e2e_seconds, f"e{n}"))
        off, on_ = ({k: _median([r[k] for r in e2e_runs[side]]) for k in ("ingest", "delivered", "cpu_us")}
                    for side in (False, True))
        print(_row("end to end", "conns", "off msg/s", "", "CPU µs", "on msg/s", "", "CPU µs", "rate", "CPU",
                   "+CPU µs") + "  (CPU per delivered message)")
        print(_row("  ingest", 32, *_figures(off["ingest"], on_["ingest"])))
        print(_row("  delivered", "", *_figures(off["delivered"], on_["delivered"], off["cpu_us"],
                                                on_["cpu_us"])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
