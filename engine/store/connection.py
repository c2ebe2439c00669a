"""The connection a store op receives: the DB-API subset every room's SQL uses.

`sqlite3.Connection` satisfies it as is; the PostgreSQL store passes an adapter with the same shape
(issue #13). Rooms type their ops with `Connection`, so nothing outside `engine.store` names a driver.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, Protocol

Params = Sequence[Any] | Mapping[str, Any]


class Dialect(Enum):
    """The SQL a store speaks (`Store.dialect`): rooms whose SQL cannot be portable branch on it."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"


class Cursor(Protocol):
    """What a room reads back from `Connection.execute`."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A DB-API connection inside the store's transaction (ops never commit or roll back)."""

    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> Cursor: ...


def dialect_of(conn: Connection) -> Dialect:
    """The dialect of the connection an op was given, for ops that have no `Store` at hand: SQLite's
    own connection class, or else the PostgreSQL store's adapter (the only other `Connection`)."""
    return Dialect.SQLITE if isinstance(conn, sqlite3.Connection) else Dialect.POSTGRES
