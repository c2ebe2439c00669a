"""Helpers for the hostile-peer tests: start an engine with one channel, raw sockets, a measured client.

The well-behaved client (`NormalSender`) sends one ADT^A01 at a time over MLLP for as long as a hostile
scenario runs and records each ACK's round trip, so a test can assert that the hostile peer did not hurt
it (p99 under a loose bound, every message AA).
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """Sends ADT^A01 after ADT^A01 on one MLLP connection until stopped; records ACK latencies."""

    def __init__(self, port: int, *, pause: float = 0.005) -> None:
        self.port = port
        self.pause = pause
        self.latencies: list[float] = []
        self.msa1: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> NormalSender:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        async with MllpClient("127.0.0.1", self.port, timeout=10.0) as client:
            n = 0
            while not self._stop.is_set():
                n += 1
                started = time.perf_counter()
                ack = await client.send(adt(f"NORMAL-{n}"))
                self.latencies.append(time.perf_counter() - started)
                self.msa1.append(ack.split(b"\rMSA|", 1)[1][:2].decode())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.pause)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
