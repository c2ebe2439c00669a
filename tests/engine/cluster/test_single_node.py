"""One engine on SQLite is a cluster of one: it shows itself in `/status`, holds every singleton, and
its SQL is the SQL of before clusters (no owner condition, no write per heartbeat)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from engine.cluster import LocalCluster, Singleton, export_singleton, fifo_singleton
from engine.config import Config
from engine.errors import ConfigError
from engine.runtime import Engine

CONFIG = """
engine:
  store: {path: var/single.db}
  admin: {listen: "127.0.0.1:0"}
  cluster: {node_id: ward-7, heartbeat: 1s, lease: 5s}
channels:
  - name: his-adt
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
"""


async def test_status_on_sqlite_shows_one_node_with_its_config_version_and_channels(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    engine: Engine = await engine_factory(make_config(CONFIG))
    assert engine.admin is not None
    async with aiohttp.ClientSession() as http, http.get(engine.admin.url + "/status") as resp:
        body = await resp.json()
    cluster = body["cluster"]
    assert cluster["node_id"] == "ward-7"
    assert cluster["backend"] == "local"
    assert (cluster["heartbeat"], cluster["lease"]) == (1.0, 5.0)
    [node] = cluster["nodes"]
    assert node["id"] == "ward-7"
    assert node["config_version"] == body["engine"]["config"]["version"]
    assert node["channels"] == ["his-adt"]
    assert node["admin_url"] == engine.admin.url
    assert {"retention", "recovery", "history"} <= set(node["singletons"])
    assert node["state"] == "running"


async def test_node_id_defaults_to_host_and_pid(make_config: Callable[[str], Config],
                                                engine_factory: Callable[[Config], Any]) -> None:
    import os
    import socket

    engine: Engine = await engine_factory(make_config(CONFIG.replace("node_id: ward-7, ", "")))
    assert engine.cluster.node_id == f"{socket.gethostname()}-{os.getpid()}"


def test_a_single_node_holds_every_singleton_and_filters_no_claim() -> None:
    cluster = LocalCluster(node_id="one")
    for name in (*Singleton, fifo_singleton("cdr"), export_singleton("monthly")):
        assert cluster.holds(name)
    assert cluster.owner is None  # outbox.owned(None): the claim SQL has no owner condition


def test_a_lease_not_longer_than_the_heartbeat_is_refused_with_its_line(
        make_config: Callable[[str], Config]) -> None:
    with pytest.raises(ConfigError, match=r"engine\.cluster\.lease") as info:
        make_config(CONFIG.replace("lease: 5s", "lease: 1s"))
    assert info.value.line == 5


def test_an_unknown_cluster_key_is_refused(make_config: Callable[[str], Config]) -> None:
    with pytest.raises(ConfigError, match="heartbeats"):
        make_config(CONFIG.replace("heartbeat: 1s", "heartbeats: 1s"))
