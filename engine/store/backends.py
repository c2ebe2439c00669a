"""The store a config asks for: `engine.store.backend` → `SqliteStore` or `PostgresStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.store.base import Store
from engine.store.connection import Dialect

if TYPE_CHECKING:
    from engine.config import StoreConfig


def build_store(config: StoreConfig, *, engine_lock: bool = True) -> Store:
    """An unopened store for `engine.store`. `engine_lock=False` is for a tool working beside a running
    engine (SQLite's one-engine lock; PostgreSQL has none: several nodes share it)."""
    if config.backend is Dialect.POSTGRES:
        from engine.store.postgres import PostgresStore  # psycopg is imported only when it is used

        if not config.dsn:
            raise ValueError("engine.store.dsn is required for backend postgres")
        return PostgresStore(config.dsn, readers=config.readers)
    from engine.store.sqlite import SqliteStore

    return SqliteStore(config.path, max_size=config.max_size, readers=config.readers, engine_lock=engine_lock)
