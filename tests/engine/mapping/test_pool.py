"""`engine.mapping_workers: 1`: messages are mapped in a worker process, with the same results, the same
data-quality counts, and no message lost when a worker dies or the routes are reloaded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from channels.mllp.client import MllpClient
from engine.config import Config
from engine.runtime import Engine
from engine.store import messages

MakeConfig = Callable[[str], Config]
Factory = Callable[[Config], Any]
ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "samples"

CONFIG = """
engine:
  store: {{path: {db}}}
  admin: {{enabled: false}}
  mapping_workers: {workers}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
routes:
{routes}
"""
ROUTES = [ROOT / "mappings" / "adt_person.yaml", ROOT / "mappings" / "adt_inpatient_admission.yaml"]


def config_text(db: str, workers: int, routes: list[Path]) -> str:
    return CONFIG.format(db=db, workers=workers, routes="\n".join(f"  - {r}" for r in routes))


def sample(name: str, control_id: str) -> bytes:
    raw = (SAMPLES / name).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    head, rest = raw.split(b"\r", 1)
    fields = head.split(b"|")
    fields[9] = control_id.encode()
    return b"|".join(fields) + b"\r" + rest


async def send(engine: Engine, payloads: list[bytes]) -> None:
    port = int(engine.channels["his"].inbound.describe()["listen"].rsplit(":", 1)[1])  # type: ignore[union-attr]
    async with MllpClient("127.0.0.1", port) as client:
        for payload in payloads:
            ack = await client.send(payload)
            assert b"MSA|AA|" in ack or b"MSA|CA|" in ack


async def outcomes(engine: Engine, count: int, timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
    """{control id: (state, [(route, dataset, record, error)])} once `count` messages are processed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await engine.store.read(lambda c: messages.search(c, messages.MessageQuery(limit=1000)))
        done = [m for m in rows if m.state.value != "received"]
        if len(done) >= count or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    out = {}
    for m in done:
        results = await engine.store.read(lambda c, m=m: messages.results_of(c, m.id))
        out[m.control_id] = (m.state.value, [(r["route_id"], r["dataset"], _comparable(r["record"]),
                                              r["error"]) for r in results])
    assert len(out) == count, f"{len(out)} of {count} messages processed"
    return out


def _comparable(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The record without what differs between two engines: the envelope's ids and times (its keys stay)."""
    if record is None or "envelope" not in record:
        return record
    return {**record, "envelope": sorted(record["envelope"])}


def worker_pids(engine: Engine) -> list[int]:
    pool = engine.mapping_pool
    assert pool is not None and pool._executor is not None
    return list(pool._executor._processes)  # type: ignore[attr-defined]


async def test_workers_map_exactly_as_the_event_loop_and_count_the_same_quality(
        tmp_path: Path, make_config: MakeConfig, engine_factory: Factory) -> None:
    batch = [sample("adt_a01_v251_utf8.hl7", f"W{i}") for i in range(20)]
    batch += [sample("adt_a04_v24.hl7", "W-A04"), sample("adt_a08_escapes.hl7", "W-A08")]
    results = {}
    quality = {}
    for workers in (0, 1, 2):  # two workers map one batch in two slices
        engine: Engine = await engine_factory(make_config(config_text(str(tmp_path / f"w{workers}.db"),
                                                                      workers, ROUTES)))
        assert (engine.pipeline.mapper is not None) == bool(workers)
        await send(engine, batch)
        results[workers] = await outcomes(engine, len(batch))
        quality[workers] = {k: v for k, v in engine.router.quality_snapshot().items() if k != "since"}
        if workers:
            assert engine.mapping_pool is not None and engine.mapping_pool.batches >= 1
            assert os.getpid() not in worker_pids(engine)
    assert results[1] == results[0] and results[2] == results[0]
    assert quality[1] == quality[0] == quality[2] and quality[0]  # the parent counts what workers mapped


async def test_a_killed_worker_loses_no_message(
        tmp_path: Path, make_config: MakeConfig, engine_factory: Factory) -> None:
    engine: Engine = await engine_factory(make_config(config_text(str(tmp_path / "k.db"), 1, ROUTES)))
    await send(engine, [sample("adt_a01_v251_utf8.hl7", "K1")])
    await outcomes(engine, 1)
    (pid,) = worker_pids(engine)
    os.kill(pid, signal.SIGKILL)
    await send(engine, [sample("adt_a01_v251_utf8.hl7", f"K{i}") for i in range(2, 12)])
    done = await outcomes(engine, 11)
    assert {state for state, _ in done.values()} == {"mapped"}
    assert worker_pids(engine) != [pid]  # a new worker took over


async def test_a_reload_gives_the_workers_the_new_routes(
        tmp_path: Path, make_config: MakeConfig, engine_factory: Factory) -> None:
    engine: Engine = await engine_factory(make_config(config_text(str(tmp_path / "r.db"), 1, ROUTES)))
    await send(engine, [sample("adt_a01_v251_utf8.hl7", "R1")])
    before = await outcomes(engine, 1)
    assert {r[0] for r in before["R1"][1]} == {"adt_person", "adt_inpatient_admission"}
    engine.config.file.write_text(config_text(str(tmp_path / "r.db"), 1, ROUTES[:1]), encoding="utf-8")
    result = await engine.reload()
    assert result.ok, result.errors
    assert engine.mapping_pool is not None and engine.mapping_pool.restarts == 1
    await send(engine, [sample("adt_a01_v251_utf8.hl7", "R2")])
    after = await outcomes(engine, 2)
    assert [r[0] for r in after["R2"][1]] == ["adt_person"]


def children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (read from /proc)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


async def test_workers_exit_when_the_engine_is_killed(tmp_path: Path) -> None:
    """After `kill -9` nothing stops a worker cleanly: it notices its parent is gone and exits."""
    from engine_process import start_engine

    config = tmp_path / "config.yaml"
    config.write_text(config_text(str(tmp_path / "kill.db"), 1, ROUTES).replace(
        "admin: {enabled: false}", "admin: {enabled: false}\n  log: {format: json, level: info}"),
        encoding="utf-8")
    proc, _ = await start_engine(config)
    try:
        workers = await asyncio.to_thread(poll, lambda: children(proc.pid), 30)
        assert workers, "the engine started no mapping worker"
    finally:
        proc.kill()
        # wait() also waits for the engine's stderr pipe to close, which a surviving worker holds open
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 15)
    gone = await asyncio.to_thread(poll, lambda: not any(alive(pid) for pid in workers), 5)
    assert gone, f"mapping workers {workers} outlived the killed engine"


def poll(check: Callable[[], Any], timeout: float) -> Any:
    """`check()` every 0.1 s until it is truthy or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
