"""Fixtures of the cluster stories: a private PostgreSQL for the session, an HTTP sink, three nodes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import POSTGRES_STORE, Cluster
from cluster_story import CLUSTER_SETTINGS, missing
from delivery_support import Sink


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[Any]:
    reason = missing()
    if reason:
        pytest.skip(reason)
    from postgres import PrivatePostgres

    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    receiver = await Sink().start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
def make_cluster(tmp_path: Path, private_postgres: Any) -> Iterator[Any]:
    """Build (not start) three nodes on a fresh database with short leases; closed after the test."""
    made: list[Cluster] = []

    def make(body: str, *, nodes: int = 3) -> Cluster:
        dsn = private_postgres.create_database()
        cluster = Cluster(tmp_path / f"cluster{len(made)}", nodes=nodes, store=POSTGRES_STORE,
                          engine=CLUSTER_SETTINGS, body=body, env={"YONGLINK_PG_DSN": dsn},
                          postgres=private_postgres)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.close()
