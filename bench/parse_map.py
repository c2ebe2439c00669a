"""Benchmark: parse and map HL7 v2 messages, against python-hl7 measured in the same run.

Each *pipeline* is a list of named steps applied to one message text; the parse pipelines read the
same three values (PID-5.1 family name, PID-7 birth date, MSH-10 control id). A mapping step will be
appended to ``PIPELINES["yonglink"]`` (see `add_step`) once the mapping runtime exists; python-hl7
stays the baseline. Output: msgs/s per pipeline and the ratio yonglink / python-hl7 (target >= 20x).

    .venv/bin/python bench/parse_map.py [--seconds 2] [--rounds 5] [--sample adt_a01_v251_utf8.hl7]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hl7  # noqa: E402  (python-hl7: the baseline)

from engine.hl7v2.charset import decode, python_codec, sniff_charset  # noqa: E402
from engine.hl7v2.er7 import Er7Message  # noqa: E402

TARGET_RATIO = 20.0
Step = Callable[[object], object]


def yl_parse(text: object) -> object:
    """yonglink: lazy ER7 parse."""
    return Er7Message.parse(text)  # type: ignore[arg-type]


def yl_decode(raw: object) -> object:
    """yonglink: MSH-18 sniff + decode of the received bytes (what an inbound channel does)."""
    data: bytes = raw  # type: ignore[assignment]
    return decode(data, sniff_charset(data))


def yl_read(msg: object) -> object:
    """yonglink: the three reads."""
    m: Er7Message = msg  # type: ignore[assignment]
    return (m.get("PID-5.1"), m.get("PID-7"), m.get("MSH-10"))


def hl7_parse(text: object) -> object:
    """python-hl7: full parse."""
    return hl7.parse(text)


def hl7_read(msg: object) -> object:
    """python-hl7: the same three reads."""
    m = msg
    return (m["PID.F5.R1.C1"], m["PID.F7"], m["MSH.F10"])  # type: ignore[index]


PIPELINES: dict[str, list[tuple[str, Step]]] = {
    "yonglink": [("parse", yl_parse), ("read PID-5.1, PID-7, MSH-10", yl_read)],
    "python-hl7": [("parse", hl7_parse), ("read PID-5.1, PID-7, MSH-10", hl7_read)],
    "yonglink+bytes": [("sniff+decode bytes", yl_decode), ("parse", yl_parse),
                       ("read PID-5.1, PID-7, MSH-10", yl_read)],
}
BYTES_INPUT = {"yonglink+bytes"}
"""Pipelines fed the raw bytes instead of the decoded text."""
BASELINE = "python-hl7"


def add_step(pipeline: str, name: str, step: Step) -> None:
    """Append a step (e.g. mapping to a dataset record) to a pipeline; it receives the previous output."""
    PIPELINES[pipeline].append((name, step))


def run_once(steps: list[tuple[str, Step]], text: str | bytes) -> object:
    value: object = text
    for _, step in steps:
        value = step(value)
    return value


def measure(steps: list[tuple[str, Step]], text: str | bytes, seconds: float, rounds: int) -> float:
    """Best msgs/s over ``rounds`` rounds of about ``seconds`` each."""
    batch = 200
    best = 0.0
    for _ in range(rounds):
        done, start = 0, time.perf_counter()
        deadline = start + seconds / rounds
        while True:
            for _ in range(batch):
                run_once(steps, text)
            done += batch
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, done / (now - start))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="measuring time per pipeline")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sample", default="adt_a01_v251_utf8.hl7", help="file in tests/samples/")
    args, _ = ap.parse_known_args(argv)  # bench/run_all.py passes its own arguments through

    raw = (ROOT / "tests" / "samples" / args.sample).read_bytes()
    text = decode(raw, sniff_charset(raw)).replace("\r\n", "\r").replace("\n", "\r")
    data = text.encode(python_codec(sniff_charset(raw) or "UNICODE UTF-8"))
    inputs = {name: data if name in BYTES_INPUT else text for name in PIPELINES}
    results = {name: run_once(steps, inputs[name]) for name, steps in PIPELINES.items()}
    first = next(iter(results.values()))
    for name, value in results.items():
        if [str(v) for v in value] != [str(v) for v in first]:  # type: ignore[attr-defined]
            print(f"MISMATCH: {name} read {value!r}, expected {first!r}")
            return 2

    print(f"sample {args.sample}: {len(raw)} bytes, {len(text.strip(chr(13)).split(chr(13)))} segments; "
          f"reads -> {first!r}")
    rates = {}
    for name, steps in PIPELINES.items():
        rates[name] = measure(steps, inputs[name], args.seconds, args.rounds)
        print(f"{name:>14}: {rates[name]:>10,.0f} msgs/s   ({' + '.join(s for s, _ in steps)})")
    ratio = rates["yonglink"] / rates[BASELINE]  # text in, as python-hl7 needs
    verdict = "OK" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"         ratio: {ratio:.1f}x yonglink / {BASELINE} (target >= {TARGET_RATIO:.0f}x) {verdict}")
    measure_mapping(args.seconds, args.rounds)
    return 0


MAP_CASES = (("adt_a01_v251_utf8.hl7", "adt_person"), ("oru_r01_v251_cbc.hl7", "oru_lab_report"))
"""(sample, route): ADT^A01 → person, ORU^R01 with 20 OBX → lab_report with 20 result rows."""
MAP_TARGET = 5000.0
"""Full ADT → validated person records per second on one core (issue 3)."""


def measure_mapping(seconds: float, rounds: int) -> None:
    """Bytes in → decode, parse, route, map and schema-validate one dataset record (the mapping room's
    `Router`, exactly as the pipeline calls it), for the shipped routes in mappings/."""
    from engine.mapping import build_router
    from engine.types import HL7V2, MessageState, StoredMessage

    router = build_router(sorted((ROOT / "mappings").glob("*.yaml")))
    for sample, route_id in MAP_CASES:
        raw = (ROOT / "tests" / "samples" / sample).read_bytes()
        msg = StoredMessage(id="BENCH", channel="bench", received_at=time.time(), content_type=HL7V2,
                            state=MessageState.RECEIVED, raw=raw)

        def step(m: object, route_id: str = route_id) -> object:
            [outcome] = router.route_outcomes(m, only=route_id, observe=False)  # type: ignore[arg-type]
            return outcome.result

        result = step(msg)
        if result.record is None:  # type: ignore[attr-defined]
            print(f"{route_id}: MAPPING FAILED: {result.error}")  # type: ignore[attr-defined]
            continue
        rate = measure([("map", step)], msg, seconds, rounds)  # type: ignore[arg-type]
        rows = len(result.record.get("results", []))  # type: ignore[attr-defined]
        extra = f", {rate * rows:,.0f} result rows/s" if rows else ""
        verdict = "" if rows else (" OK" if rate >= MAP_TARGET else f" BELOW TARGET ({MAP_TARGET:,.0f}/s)")
        print(f"{route_id:>14}: {rate:>10,.0f} records/s  {1e6 / rate:>6,.1f} µs/record  "
              f"(bytes → decode + parse + map + validate, {sample}{extra}){verdict}")


if __name__ == "__main__":
    sys.exit(main())
