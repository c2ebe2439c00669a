"""The connection a store op receives: the DB-API subset every room's SQL uses.

`sqlite3.Connection` satisfies it as is; the PostgreSQL store passes an adapter with the same shape
(issue #13). Rooms type their ops with `Connection`, so nothing outside `engine.store` names a driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

Params = Sequence[Any] | Mapping[str, Any]


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
