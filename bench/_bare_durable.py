"""The store's ceiling for MLLP ingest: a bare server that commits each frame before its ACK, and no more.

    .venv/bin/python bench/_bare_durable.py STORE_FILE     # prints its port, serves until killed

What is left when everything but the durable commit is taken out of the engine: an asyncio Protocol
that cuts frames, reads MSH-10 with one split, gathers the frames of one loop turn, and has one writer
thread insert them (the engine's `messages` table and indexes, WAL, synchronous=FULL, group commit)
before writing a fixed-form ACK. No charset handling, validation, dedupe, metrics, pipeline or
ordering guarantees beyond one frame in flight per connection. bench/mllp_ingest.py runs it beside
the engine so the report shows how much of the gap to the echo ceiling is the disk, not the engine.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.ids import new_id
from engine.store import inserts, migrations


class _Server:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        migrations.apply_sqlite(self.conn)
        self.loop = asyncio.get_running_loop()
        self.pending: list[tuple[Any, bytes, tuple[Any, ...]]] = []
        self.batches: queue.SimpleQueue[list[tuple[Any, bytes, tuple[Any, ...]]]] = queue.SimpleQueue()
        threading.Thread(target=self._writer, daemon=True).start()

    def frame(self, transport: Any, payload: bytes) -> None:
        msh = payload[:payload.find(b"\r")].split(b"|", 12)
        now = time.time()
        cid = msh[9].decode()
        row = (new_id(now), "bare", now, None, "application/hl7-v2", None, msh[2].decode(), msh[3].decode(),
               cid, "ADT^A01", f"{msh[3].decode()}|{cid}", "received", None, None, None, payload)
        ack = (b"\x0bMSH|^~\\&|" + msh[4] + b"|" + msh[5] + b"|" + msh[2] + b"|" + msh[3]
               + b"|20240301101523||ACK^A01^ACK|1|P|2.5.1\rMSA|AA|" + msh[9] + b"|\r\x1c\r")
        if not self.pending:
            self.loop.call_soon(self._flush)
        self.pending.append((transport, ack, row))

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        self.batches.put(batch)

    def _writer(self) -> None:
        while True:
            batch = self.batches.get()
            while not self.batches.empty():
                batch += self.batches.get_nowait()
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(inserts._INSERT, [row for _, _, row in batch])
            self.conn.execute("COMMIT")
            self.loop.call_soon_threadsafe(_answer, batch)


def _answer(batch: list[tuple[Any, bytes, tuple[Any, ...]]]) -> None:
    for transport, ack, _ in batch:
        if not transport.is_closing():
            transport.write(ack)


class _Connection(asyncio.Protocol):
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\x1c\r")) >= 0:
            start = self.buf.find(b"\x0b")
            self.server.frame(self.transport, self.buf[start + 1:end])
            self.buf = self.buf[end + 2:]


async def serve(path: str) -> None:
    server = _Server(path)
    listener = await asyncio.get_running_loop().create_server(lambda: _Connection(server), "127.0.0.1", 0)
    print(listener.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(serve(sys.argv[1]))
    except ImportError:
        asyncio.run(serve(sys.argv[1]))
