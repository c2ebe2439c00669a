"""An export destination's periods are written by the one node holding its singleton (`export:<name>`);
every node collects records into the shared store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import delivery_support as S
from cluster_nodes import HandedCluster

from engine.cluster import export_singleton
from engine.config import Config
from engine.runtime import Engine

CONFIG = """
engine:
  store: {path: var/export.db}
  admin: {enabled: false}
destinations:
  - name: zone
    type: export
    export: {dir: "%s", every: 1s, grace: 0s, timezone: Asia/Shanghai, datasets: [person]}
"""


def files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]


async def test_periods_are_written_only_while_this_node_holds_the_export(
        tmp_path: Path, make_config: Callable[[str], Config]) -> None:
    out = tmp_path / "zone"
    cluster = HandedCluster()
    engine = Engine(make_config(CONFIG % out), cluster=cluster)
    await engine.start()
    try:
        await asyncio.sleep(2.5)  # periods of 1 s end meanwhile: a node without the export writes none
        assert files(out) == []
        cluster.give(export_singleton("zone"))
        await S.wait_for(lambda: files(out))
    finally:
        await engine.stop()
