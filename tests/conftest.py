"""Fixtures shared by the whole suite: configs in a temp dir and a running engine."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config, parse_config
from engine.runtime import Engine


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Config]:
    """Build a Config from YAML text written as if it were `tmp_path/config.yaml` (store in tmp_path)."""

    def make(text: str) -> Config:
        file = tmp_path / "config.yaml"
        file.write_text(textwrap.dedent(text), encoding="utf-8")
        return parse_config(file.read_text(encoding="utf-8"), file=file)

    return make


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `both_backends` that uses a store (`store_backend`, through `engine_factory` or
    `raw_connection`) runs once on SQLite and once on PostgreSQL: the store contract holds on both. A
    test of such a module that needs one backend says so with `SQLITE_ONLY` (tests/support/backends.py)."""
    marks = metafunc.definition.iter_markers("parametrize")
    own = any(m.args and m.args[0] == "store_backend" for m in marks)
    if (metafunc.definition.get_closest_marker("both_backends") and "store_backend" in metafunc.fixturenames
            and not own):
        backends = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
        metafunc.parametrize("store_backend", backends, indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """The store backend `engine_factory` and `raw_connection` give: sqlite unless the test is marked
    `both_backends` (it then runs on each, see `pytest_generate_tests`); postgres uses a fresh database of
    the private server, the same for every engine of the test (a second engine is a restart on it)."""
    backend: str = getattr(request, "param", "sqlite")
    return backend


@pytest.fixture
async def engine_factory(request: pytest.FixtureRequest,
                         store_backend: str) -> AsyncIterator[Callable[[Config], object]]:
    """Start engines for a test and stop every one of them afterwards."""
    started: list[Engine] = []
    dsn = request.getfixturevalue("pg_dsn") if store_backend == "postgres" else None

    async def start(config: Config) -> Engine:
        if dsn is not None:
            from engine.store.postgres import PostgresStore

            engine = Engine(config, store=PostgresStore(dsn))
        else:
            engine = Engine(config)
        await engine.start()
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        await engine.stop()


# --- private RabbitMQ broker (owned by the HTTP/AMQP channel room; see tests/support/broker.py) -----------


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Any]:
    """A private RabbitMQ for the whole session: `.url`, `.stop()`, `.start()` (same ports and data).

    A broker that cannot start FAILS the tests using it, with the broker's log tail (never a skip).
    Tests that stop it must start it again (the restart test does, in a `finally`).
    """
    import broker as private_broker  # tests/support/broker.py (on pytest's pythonpath)

    broker = private_broker.PrivateBroker()
    try:
        broker.start()
    except Exception as exc:
        broker.close()
        pytest.fail(f"private RabbitMQ did not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.close()


# --- private PostgreSQL (owned by the store room; see tests/support/postgres.py) ----------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A private PostgreSQL for the whole session (`.dsn(db)`, `.create_database()`, `.stop()`,
    `.start()`). A server that cannot start FAILS the tests using it, with its log tail (never a skip).
    Tests that stop it must start it again (in a `finally`)."""
    import postgres  # tests/support/postgres.py (on pytest's pythonpath)

    try:
        server = postgres.PrivatePostgres()
        server.start()
    except Exception as exc:
        pytest.fail(f"private PostgreSQL did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_dsn(postgres_server: Any) -> Iterator[str]:
    """A fresh, empty database on the session's private PostgreSQL, dropped after the test."""
    dsn: str = postgres_server.create_database()
    try:
        yield dsn
    finally:
        if postgres_server.accepting():
            postgres_server.drop_database(dsn)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Makes an unopened store of each backend in turn (the store contract runs on both): SQLite in
    tmp_path, or PostgreSQL in a fresh database of the private server. Calling it again gives a second
    store on the same database (a restart)."""
    from engine.store.postgres import PostgresStore
    from engine.store.sqlite import SqliteStore

    if request.param == "sqlite":
        return lambda: SqliteStore(tmp_path / "store.db")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresStore(dsn)


@pytest.fixture
def raw_connection(request: pytest.FixtureRequest, store_backend: str) -> Iterator[Any]:
    """A bare connection with the store's schema (all migrations), in autocommit, of the test's
    `store_backend`: `sqlite3.Connection` in memory, or the PostgreSQL store's adapter on a fresh
    database. For tests of a room's SQL without an engine."""
    from engine.store import migrations

    if store_backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(":memory:", isolation_level=None)
        migrations.apply_sqlite(conn)
        yield conn
        conn.close()
        return
    import psycopg

    from engine.store.pg_connection import PgConnection

    with psycopg.connect(request.getfixturevalue("pg_dsn"), autocommit=True) as pg:
        migrations.apply_postgres(pg)
        yield PgConnection(pg)
