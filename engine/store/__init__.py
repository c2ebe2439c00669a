"""The store: the `Store` contract, its SQLite and PostgreSQL backends, the schema migrations, the
messages table, ingest batching, query filters."""

from engine.store.base import Store
from engine.store.connection import Dialect
from engine.store.sqlite import SqliteStore

__all__ = ["Dialect", "SqliteStore", "Store"]
