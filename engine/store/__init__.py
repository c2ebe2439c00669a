"""The store: the `Store` contract and its SQLite backend, the messages table, ingest batching, query
filters."""

from engine.store.sqlite import CORE_DDL, SqliteStore, Store

__all__ = ["CORE_DDL", "SqliteStore", "Store"]
