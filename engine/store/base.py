"""The `Store` contract every backend implements (SQLite: `engine.store.sqlite`, PostgreSQL:
`engine.store.postgres`).

Every write is a function of a DB-API connection (`engine.store.connection.Connection`), queued to one
writer thread that group-commits whatever queued while its previous commit ran; reads run on reader
threads. The event loop never touches the database: it awaits futures the writer resolves after COMMIT,
so an ACK sent after `await store.write(...)` is always after a durable commit.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeVar

from engine.store.connection import Connection, Dialect

T = TypeVar("T")
WriteOp = Callable[[Connection], T]
"""A unit of work run inside the writer's transaction; it must not commit or roll back itself."""
ReadOp = Callable[[Connection], T]
"""A read-only unit of work run on a reader connection."""


class Store(ABC):
    """A durable store: `write` ops are committed before their future resolves."""

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
