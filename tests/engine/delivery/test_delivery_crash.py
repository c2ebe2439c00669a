"""kill -9 during delivery, then restart: nothing accepted is lost, and re-sends carry the same key."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import delivery_support as S

from engine.config import Config
from engine.runtime import Engine

N = 1000

CHILD = """
import asyncio, sys, time
from pathlib import Path
from engine.config import load_config
from engine.runtime import Engine
from engine.store import messages
from engine.types import InboundMessage, MessageState, RouteResult

async def main():
    engine = Engine(load_config(sys.argv[1]))
    await engine.start()
    now = time.time()
    def op(conn):
        wake = set()
        for i in range(int(sys.argv[2])):
            acc = messages.insert(conn, InboundMessage(channel="lab", raw=b"MSH|x", content_type="x",
                                                       received_at=now), dedupe_window=0)
            result = RouteResult(route_id="r", dataset="person", record={"n": i}, destinations=("slow",))
            messages.record_outcome(conn, acc.message_id, MessageState.MAPPED, None, [result], now=now)
            wake |= engine.delivery.record(conn, messages.get(conn, acc.message_id), [result], now)
        return wake
    engine.delivery.wake(await engine.store.write(op))
    print("READY", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_kill_9_with_1000_deliveries_in_flight_loses_none_and_resends_with_the_same_key(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    sink = await S.Sink(delay=0.2).start()
    text = f"""
engine:
  store: {{path: var/crash.db}}
  admin: {{enabled: false}}
  log: {{level: warning}}
destinations:
  - name: slow
    type: http
    concurrency: 64
    retry: {{initial_delay: 0.05}}
    http: {{url: "{sink.url}/in"}}
"""
    config = make_config(text)
    argv = [sys.executable, "-c", textwrap.dedent(CHILD), str(config.file), str(N)]
    child = subprocess.Popen(argv,  # noqa: ASYNC220 - the child is SIGKILLed, not awaited
                             cwd=Path(__file__).parents[3], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert child.stdout is not None
        stdout = child.stdout

        def ready() -> bool:
            return any(line.strip() == "READY" for line in iter(stdout.readline, ""))

        assert await asyncio.to_thread(ready)
        await S.wait_for(lambda: len(sink.requests) >= 200, timeout=60)
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        before = len(sink.requests)
        assert before < N, "the child finished before the kill; the test proves nothing"

        engine: Engine = await engine_factory(config)
        await S.wait_for(lambda: S.rows(engine, "SELECT count(*) FROM deliveries WHERE state = 'sent'"
                                                " HAVING count(*) = ?", N), timeout=120)
        by_message: dict[str, set[str]] = {}
        for r in sink.requests:
            by_message.setdefault(r.message_id, set()).add(r.key)
        ids = {mid for (mid,) in await S.rows(engine, "SELECT id FROM messages")}
        assert len(ids) == N and set(by_message) == ids  # every message delivered, none lost
        assert all(len(keys) == 1 for keys in by_message.values())  # a re-send repeats its key
        assert len({k for keys in by_message.values() for k in keys}) == N
        assert len(sink.requests) >= N  # some were sent twice: in flight at the kill
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
        await sink.stop()
