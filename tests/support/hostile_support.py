"""Helpers for the hostile-peer tests: start an engine with one channel, raw sockets, a measured client.

The well-behaved client (`NormalSender`) sends one ADT^A01 at a time over MLLP for as long as a hostile
scenario runs and records each ACK's round trip, so a test can assert that the hostile peer did not hurt
it (p99 under a loose bound, every message AA).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from channels.mllp.client import MllpClient
from engine.config import Config
from engine.runtime import Engine

# Shape: HL7 v2.5.1 ADT^A01 (§3.3.1), as in tests/channels/mllp/test_mllp.py.
ADT = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|A01|20240301101500\rPID|1||0001234567^^^NBDYYY^PI||TEST^PATIENT\r{body}")


def adt(control_id: str, body: str = "") -> bytes:
    return ADT.format(cid=control_id, body=body).encode()


async def start_mllp(make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
                     mllp: str = "") -> tuple[Engine, int]:
    """An engine with one MLLP channel `lab` on 127.0.0.1:0 (extra settings in `mllp`); engine, port."""
    engine: Engine = await engine_factory(make_config(f"""
        engine:
          store: {{path: var/e.db}}
          admin: {{enabled: false}}
        channels:
          - name: lab
            type: mllp
            mllp: {{listen: "127.0.0.1:0"{mllp}}}
        """))
    inbound = engine.channels["lab"].inbound
    if inbound is None:
        raise RuntimeError(f"the lab channel did not start: {engine.channels['lab'].stats.last_error}")
    return engine, int(inbound.describe()["listen"].rsplit(":", 1)[1])


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                try:
                    data = await reader.read(65536)
                except (ConnectionError, OSError):
                    return True
                if not data:
                    return True
    except TimeoutError:
        return False


class NormalSender:
    """Sends ADT^A01 after ADT^A01 on one MLLP connection until stopped; records ACK latencies.

    It runs on its own event loop in its own thread, so the hostile client coroutines of the test (which
    share the engine's loop) cannot starve it of turns: what it measures is how long the engine takes
    to answer, not how often the test let it ask.
    """

    def __init__(self, port: int, *, pause: float = 0.005) -> None:
        self.port = port
        self.pause = pause
        self.latencies: list[float] = []
        self.msa1: list[str] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._main, name="normal-sender", daemon=True)

    async def __aenter__(self) -> NormalSender:
        self._thread.start()
        await asyncio.to_thread(self._first.wait, 10.0)  # answered once before the hostile part starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, 30)
        if self.error is not None:
            raise AssertionError(f"the normal sender failed: {self.error!r}") from self.error

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by __aexit__
            self.error = exc
        finally:
            self._first.set()

    async def _run(self) -> None:
        async with MllpClient("127.0.0.1", self.port, timeout=10.0) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.perf_counter()
                ack = await client.send(adt(f"NORMAL-{n}"))
                self.latencies.append(time.perf_counter() - started)
                self.msa1.append(ack.split(b"\rMSA|", 1)[1][:2].decode())
                self._first.set()
                await asyncio.sleep(self.pause)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
