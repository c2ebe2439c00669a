"""The PostgreSQL store: the same contract as SQLite (one writer thread with group commit, readers off the
event loop), on psycopg 3, for several engine nodes on one database (issue #13).

psycopg 3 is used synchronously inside the writer and reader threads, so every room's op stays a function
of a DB-API connection (`PgConnection` adapts the SQL). Measured by bench/pg_driver.py on this box, the
store's shape (one writer, 32-row INSERT per transaction) committed 19,600 rows/s with psycopg 3 against
11,800 with asyncpg; asyncpg led only with many single-row clients, which the store never is.

Durability: `synchronous_commit` is on for a group holding a durable op (an ACK waits for it) and off for
a group of only non-durable ops (outcomes, delivery bookkeeping: redone from durable state), per
transaction; PostgreSQL's asynchronous commit may lose a suffix of such commits in a server crash, never
one before a later synchronous commit: the contract of `Store.write(durable=False)`.

A lost server is transient: the ops of the group fail with `StoreUnavailable` (no positive ACK is sent),
the connection is dropped and the writer reconnects on the next group, waiting `reconnect_delay` between
failed attempts; groups that arrive while it waits fail at once rather than queue (a sender is answered
"try again" in milliseconds, not after a connect timeout). A commit whose connection broke has an unknown
outcome: it is reported failed, the sender retries, and the duplicate check answers the retry.
"""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import structlog

from engine.errors import MigrationError, StoreError, StoreFullError, StoreUnavailable
from engine.store import migrations
from engine.store.base import QueuedWrite, ReadOp, Store, T, WriteOp, settle_all, take_batch
from engine.store.cipher import PLAIN, PayloadCipher
from engine.store.connection import Dialect
from engine.store.pg_connection import PgConnection

DEFAULT_MAX_BATCH = 4096
"""Most operations one group commit may hold (as SQLite's writer)."""
DEFAULT_READERS = 2
"""Reader threads, each with its own connection."""
CONNECT_TIMEOUT = 5
"""Seconds a connection attempt may take (libpq `connect_timeout`; a refused port fails at once)."""
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 5.0
"""Seconds between failed connection attempts: doubling from the first to the cap."""
OPEN_WAIT = 30.0
"""Seconds `open` keeps trying to reach the server (a node starting during a failover or before the
database is up) before it fails with StoreUnavailable."""
APPLICATION_NAME = "yonglink"
SIZE_EVERY = 10.0
"""Seconds between two reads of the database size for `/status` (by the writer, after a commit)."""

log = structlog.get_logger("yonglink.store")


def reconnect_delay(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after `failures` consecutive failed connection attempts (1-based): doubling from
    `RECONNECT_FIRST`, capped at `RECONNECT_MAX`, spread by ±20 % so restarted nodes do not reconnect in
    step; 0 before any failure."""
    if failures <= 0:
        return 0.0
    base = min(RECONNECT_MAX, RECONNECT_FIRST * 2.0 ** min(failures - 1, 32))
    spread: float = (rng or random).uniform(-0.2, 0.2)
    return min(RECONNECT_MAX, base * (1.0 + spread))


class PostgresStore(Store):
    """PostgreSQL at `dsn`; several engines may share it (the cluster semantics are engine.cluster's)."""

    def __init__(self, dsn: str, *, max_batch: int = DEFAULT_MAX_BATCH,
                 readers: int = DEFAULT_READERS, open_wait: float = OPEN_WAIT,
                 cipher: PayloadCipher = PLAIN) -> None:
        self.dsn = dsn
        self.cipher = cipher
        self.open_wait = open_wait
        self.max_batch = max_batch
        self._ops: queue.SimpleQueue[QueuedWrite | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="yonglink-store-read")
        self._local = threading.local()
        self._reader_conns: list[psycopg.Connection[Any]] = []  # closed by `close`
        self._conn: psycopg.Connection[Any] | None = None
        self._synchronous = True
        self._failures = 0  # consecutive failed connection attempts of the writer
        self._retry_at = 0.0
        self.commits = 0
        self.ops_committed = 0
        self.reconnects = 0
        self.unavailable_since: float | None = None
        self.size_bytes: int | None = None  # pg_database_size, refreshed every SIZE_EVERY seconds
        self._size_at = 0.0

    @property
    def dialect(self) -> Dialect:
        return Dialect.POSTGRES

    # --- connections -------------------------------------------------------------------------------

    def _connect(self, *, reader: bool = False) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name=APPLICATION_NAME + ("-read" if reader else ""))
        if reader:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def _writer_conn(self) -> psycopg.Connection[Any]:
        """The writer's connection, connecting if it has none (StoreUnavailable while the server is away)."""
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        self._drop()
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreUnavailable("PostgreSQL is unavailable; reconnecting")
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            self._failures += 1
            self._retry_at = now + reconnect_delay(self._failures)
            self._mark_unavailable(exc)
            raise StoreUnavailable(f"PostgreSQL is unavailable: {_first_line(exc)}") from None
        self._synchronous = True
        if self._failures or self.unavailable_since is not None:
            self.reconnects += 1
            log.warning("store reconnected", backend="postgres", attempts=self._failures,
                        down_seconds=round(time.time() - (self.unavailable_since or time.time()), 1))
        self._failures = 0
        self.unavailable_since = None
        return self._conn

    def _mark_unavailable(self, exc: BaseException) -> None:
        if self.unavailable_since is None:
            self.unavailable_since = time.time()
            log.error("store unavailable: writes fail (no positive ACK) until PostgreSQL is back",
                      backend="postgres", error=_first_line(exc))

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    # --- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Apply the migrations and start the writer; while the server cannot be reached, try again with
        backoff for `open_wait` seconds, then fail with StoreUnavailable."""
        self._loop = asyncio.get_running_loop()
        deadline, failures = time.monotonic() + self.open_wait, 0
        while True:
            try:
                await self._loop.run_in_executor(None, self._migrate)
                break
            except psycopg.OperationalError as exc:
                failures += 1
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"cannot open store (PostgreSQL): {_first_line(exc)}") from None
                log.warning("waiting for PostgreSQL", backend="postgres", attempt=failures,
                            error=_first_line(exc))
                await asyncio.sleep(reconnect_delay(failures))
            except psycopg.Error as exc:
                raise StoreError(f"cannot open store (PostgreSQL): {_first_line(exc)}") from None
            except MigrationError as exc:
                raise StoreError(f"cannot open store (PostgreSQL): {exc}") from None
        self._thread = threading.Thread(target=self._run_writer, name="yonglink-store-writer", daemon=True)
        self._thread.start()

    def _migrate(self) -> None:
        with self._connect() as conn:
            migrations.apply_postgres(conn)
            found = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            self.size_bytes = int(found[0]) if found else None
            self._size_at = time.monotonic()

    async def close(self) -> None:
        if self._thread is None:
            return
        self._ops.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()
        self._reader_conns.clear()

    # --- writes ------------------------------------------------------------------------------------

    def write(self, op: WriteOp[T], *, durable: bool = True,
              one_statement: bool = False) -> asyncio.Future[T]:
        if self._loop is None or self._thread is None:
            raise StoreError("store is not open")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._ops.put((op, fut, durable, one_statement))
        return fut

    def _run_writer(self) -> None:
        loop = self._loop
        if loop is None:  # open() sets it before starting this thread
            return
        stopping = False
        while not stopping:
            item = self._ops.get()
            if item is None:
                break
            batch, stopping = take_batch(self._ops, item, self.max_batch)
            loop.call_soon_threadsafe(settle_all, self._run_batch(batch))
            if time.monotonic() - self._size_at >= SIZE_EVERY:
                self._refresh_size()
        self._drop()

    def _refresh_size(self) -> None:
        self._size_at = time.monotonic()
        if self._conn is None or self._conn.closed:
            return
        try:
            found = self._conn.execute("SELECT pg_database_size(current_database())").fetchone()
        except psycopg.Error:
            return  # the next group finds the connection broken and reconnects
        self.size_bytes = int(found[0]) if found else None

    def _run_batch(self, batch: list[QueuedWrite]) -> list[tuple[asyncio.Future[Any], Any, bool]]:
        try:
            conn = self._writer_conn()
            durable = any(d for _, _, d, _ in batch)
            if durable != self._synchronous:
                conn.execute(f"SET synchronous_commit = {'on' if durable else 'off'}")
                self._synchronous = durable
            if len(batch) == 1 and batch[0][3]:
                return self._autocommit(conn, batch[0][0], batch[0][1])
            return self._commit(conn, [(op, fut) for op, fut, _, _ in batch])
        except StoreUnavailable as exc:
            return [(fut, exc, True) for _, fut, _, _ in batch]
        except psycopg.Error as exc:  # the connection broke (under SET, an op or COMMIT)
            failure = self._lost(exc)
            return [(fut, failure, True) for _, fut, _, _ in batch]

    def _lost(self, exc: BaseException) -> StoreUnavailable:
        """The connection broke under an op or a commit: drop it (reconnect on the next group)."""
        self._drop()
        self._failures = max(self._failures, 1)
        self._retry_at = time.monotonic()  # the first reconnect is at once: the server may be back already
        self._mark_unavailable(exc)
        return StoreUnavailable(f"PostgreSQL connection lost: {_first_line(exc)}")

    def _autocommit(self, conn: psycopg.Connection[Any], op: WriteOp[Any],
                    fut: asyncio.Future[Any]) -> list[tuple[Any, Any, bool]]:
        """A lone one-statement op runs as its own transaction (autocommit: no BEGIN/COMMIT round trips)."""
        try:
            result = op(PgConnection(conn))
        except Exception as exc:
            if isinstance(exc, psycopg.OperationalError) and _connection_gone(conn, exc):
                raise
            return [(fut, _as_store_error(exc), True)]
        self.commits += 1
        self.ops_committed += 1
        return [(fut, result, False)]

    def _commit(self, conn: psycopg.Connection[Any],
                batch: list[tuple[WriteOp[Any], asyncio.Future[Any]]]) -> list[tuple[Any, Any, bool]]:
        """Run a batch in one transaction; if any op fails, redo each alone so one bad op fails alone."""
        adapter = PgConnection(conn)
        try:
            conn.execute("BEGIN")
            results = [(fut, op(adapter), False) for op, fut in batch]
            conn.execute("COMMIT")
            self.commits += 1
            self.ops_committed += len(batch)
            return results
        except Exception as exc:
            if isinstance(exc, psycopg.OperationalError) and _connection_gone(conn, exc):
                raise
            _rollback(conn)
            if len(batch) == 1:
                return [(batch[0][1], _as_store_error(exc), True)]
        outcomes = []
        for op, fut in batch:
            outcomes.extend(self._commit(conn, [(op, fut)]))
        return outcomes

    # --- reads -------------------------------------------------------------------------------------

    async def read(self, op: ReadOp[T]) -> T:
        def run() -> T:
            conn: psycopg.Connection[Any] | None = self._local.__dict__.get("conn")
            try:
                if conn is None or conn.closed:
                    conn = self._local.conn = self._connect(reader=True)
                    self._reader_conns.append(conn)
                return op(PgConnection(conn))
            except psycopg.OperationalError as exc:
                if conn is not None and _connection_gone(conn, exc):
                    conn.close()
                    self._local.conn = None
                    raise StoreUnavailable(f"store read failed: {_first_line(exc)}") from None
                raise StoreError(f"store read failed: {_first_line(exc)}") from None
            except psycopg.Error as exc:
                raise StoreError(f"store read failed: {_first_line(exc)}") from None

        if self._thread is None:
            raise StoreError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    def describe(self) -> dict[str, Any]:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        return {"type": "postgres", "host": info.get("host"), "port": info.get("port"),
                "database": info.get("dbname"), "size_bytes": self.size_bytes,
                "available": self.unavailable_since is None,
                "unavailable_since": self.unavailable_since, "full": False, "commits": self.commits,
                "ops_committed": self.ops_committed, "reconnects": self.reconnects}

    async def check_writable(self) -> bool:
        try:
            await self.write(lambda conn: conn.execute(
                "INSERT INTO engine_meta (key, value) VALUES ('ready_probe', now()::text)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value"), one_statement=True)
        except StoreError:
            return False
        return True


def _connection_gone(conn: psycopg.Connection[Any], exc: BaseException) -> bool:
    return bool(conn.closed or conn.broken) or isinstance(exc, psycopg.errors.AdminShutdown)


def _rollback(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


def _as_store_error(exc: BaseException) -> BaseException:
    if isinstance(exc, psycopg.errors.DiskFull):
        return StoreFullError(f"store commit failed: {_first_line(exc)}")
    if isinstance(exc, psycopg.Error):
        return StoreError(f"store commit failed: {_first_line(exc)}")
    return exc


def _first_line(exc: BaseException) -> str:
    """The error's first line: the server's message, without the DETAIL lines (which can quote row
    values, i.e. patient data)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
