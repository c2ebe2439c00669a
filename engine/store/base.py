"""The `Store` contract every backend implements (SQLite: `engine.store.sqlite`, PostgreSQL:
`engine.store.postgres`).

Every write is a function of a DB-API connection (`engine.store.connection.Connection`), queued to one
writer thread that group-commits whatever queued while its previous commit ran; reads run on reader
threads. The event loop never touches the database: it awaits futures the writer resolves after COMMIT,
so an ACK sent after `await store.write(...)` is always after a durable commit.
"""

from __future__ import annotations

import asyncio
import queue
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from engine.store.cipher import PLAIN, PayloadCipher
from engine.store.connection import Connection, Dialect

T = TypeVar("T")
WriteOp = Callable[[Connection], T]
"""A unit of work run inside the writer's transaction; it must not commit or roll back itself."""
ReadOp = Callable[[Connection], T]
"""A read-only unit of work run on a reader connection."""
QueuedWrite = tuple[WriteOp[Any], "asyncio.Future[Any]", bool, bool]
"""What `Store.write` queues for the writer thread: (op, future, durable, one_statement); None stops it."""
Outcome = tuple["asyncio.Future[Any]", Any, bool]
"""A write's result for the event loop: (future, value or exception, failed)."""


class Store(ABC):
    """A durable store: `write` ops are committed before their future resolves."""

    cipher: PayloadCipher = PLAIN
    """Seals message content at rest (engine/store/cipher.py). Rooms seal where they build rows and
    unseal where content is used, with this, so every backend stores the same sealed values."""

    @property
    @abstractmethod
    def dialect(self) -> Dialect:
        """The SQL this store speaks, for the few rooms whose SQL differs per backend."""

    @abstractmethod
    async def open(self) -> None:
        """Create the database if needed and apply the pending schema migrations
        (`engine.store.migrations`)."""

    def claim(self) -> None:  # noqa: B027 - optional hook
        """Take what makes this engine the only one on the store, where the backend has such a thing
        (SQLite: the one-engine lock, raising StoreError naming the holder); nothing by default."""

    @abstractmethod
    async def close(self) -> None:
        """Finish every queued write, then close."""

    @abstractmethod
    def write(self, op: WriteOp[T], *, durable: bool = True,
              one_statement: bool = False) -> asyncio.Future[T]:
        """Queue `op` for the next group commit; the future resolves after COMMIT (or with StoreError).

        `one_statement=True` promises that `op` writes with a single SQL statement (it may read after
        it), so when it is alone in its group it can run as its own transaction.

        `durable=True` (what an ACK needs): the commit is on disk, surviving power loss. `durable=False`
        is for work the engine can redo from durable state (a message's outcome: it stays `received`
        and is mapped again; delivery bookkeeping: at-least-once): it survives a process crash, and a
        power loss can only drop a suffix of such commits, never one before a later durable commit.
        """

    @abstractmethod
    async def read(self, op: ReadOp[T]) -> T:
        """Run a read-only `op` on a reader connection, off the event loop."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Type, path and size, for `/status`."""

    @abstractmethod
    async def check_writable(self) -> bool:
        """True when a trivial write commits (for `/readyz`)."""

    @property
    def full(self) -> bool:
        """True after a commit failed for lack of space, until space is available again."""
        return False


def take_batch(ops: queue.SimpleQueue[QueuedWrite | None], first: QueuedWrite,
               max_batch: int) -> tuple[list[QueuedWrite], bool]:
    """`first` and whatever else is queued already, up to `max_batch` (one group commit, no waiting for
    more); True when the stop marker was met among them (the writer ends after this batch)."""
    batch = [first]
    while len(batch) < max_batch:
        try:
            nxt = ops.get_nowait()
        except queue.Empty:
            break
        if nxt is None:
            return batch, True
        batch.append(nxt)
    return batch, False


def settle(fut: asyncio.Future[Any], value: Any, failed: bool) -> None:
    """Resolve `fut` on the event loop (a future cancelled by its awaiter meanwhile is left alone)."""
    if fut.done():
        return
    if failed:
        fut.set_exception(value)
    else:
        fut.set_result(value)


def settle_all(outcomes: list[Outcome]) -> None:
    """`settle` every outcome of a group commit, in one event-loop callback."""
    for fut, value, failed in outcomes:
        settle(fut, value, failed)
