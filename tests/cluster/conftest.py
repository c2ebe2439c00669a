"""Fixtures of the cluster stories: the session's private PostgreSQL, an HTTP sink, three nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import POSTGRES_STORE, Cluster
from cluster_story import CLUSTER_SETTINGS
from delivery_support import Sink


@pytest.fixture
def cluster_postgres(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's private PostgreSQL (tests/conftest.py `postgres_server`), running again after the
    test even if the test stopped it and failed before starting it."""
    server = request.getfixturevalue("postgres_server")
    try:
        yield server
    finally:
        if not server.accepting():
            server.start()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    receiver = await Sink().start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
def make_cluster(tmp_path: Path, cluster_postgres: Any) -> Iterator[Any]:
    """Build (not start) three nodes on a fresh database with short leases; closed after the test."""
    made: list[Cluster] = []

    def make(body: str, *, nodes: int = 3) -> Cluster:
        dsn = cluster_postgres.create_database()
        cluster = Cluster(tmp_path / f"cluster{len(made)}", nodes=nodes, store=POSTGRES_STORE,
                          engine=CLUSTER_SETTINGS, body=body, env={"YONGLINK_PG_DSN": dsn},
                          postgres=cluster_postgres)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
        if cluster_postgres.accepting():
            cluster_postgres.drop_database(cluster.dsn)
