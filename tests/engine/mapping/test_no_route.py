"""No silent "no route" (issue #12 item 8): a message no route takes is counted per sending organisation and
message type in `/status` and in `yonglink quality`, and `yonglink map` says which routes came closest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from backends import SQLITE_ONLY

from channels.mllp.client import MllpClient
from engine.cli import main
from engine.config import Config
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends

PERSON_ROUTE = Path(__file__).resolve().parents[3] / "mappings" / "adt_person.yaml"
CONFIG = f"""
engine:
  store: {{path: var/noroute.db}}
  admin: {{listen: "127.0.0.1:0"}}
  mapping_workers: 1
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
routes: [{PERSON_ROUTE}]
"""
A99 = ("MSH|^~\\&|HIS|{org}|EMPI|NB|20261101120000||ADT^A99|{cid}|P|2.5.1\r"
       "PID|1||P1^^^NBH^PI||X^Y||19900101|M\r")


@SQLITE_ONLY  # also runs `yonglink quality`, which reads the store the config file names (SQLite)
async def test_unrouted_messages_are_counted_by_organisation_and_type_even_with_mapping_workers(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Mapped in a worker process (mapping_workers: 1), counted in the engine all the same."""
    config = make_config(CONFIG)
    engine: Engine = await engine_factory(config)
    host, port = str(engine.channels["his"].describe()["listen"]).rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        for i, org in enumerate(("NBH", "NBH", "NBX")):
            assert b"MSA|AA|" in await client.send(A99.format(org=org, cid=f"U{i}").encode())
    for _ in range(200):
        unrouted = engine.status()["quality"].get("unrouted", {})
        if sum(n for by in unrouted.values() for n in by.values()) == 3:
            break
        await asyncio.sleep(0.05)
    assert unrouted == {"NBH": {"ADT^A99": 2}, "NBX": {"ADT^A99": 1}}
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["quality", "--config", str(config.file), "--json"])
    assert code == 0
    report = json.loads("\n".join(line for line in capsys.readouterr().out.splitlines()
                                  if not line.startswith("20")))
    assert report["unrouted"] == {"NBH": {"ADT^A99": 2}, "NBX": {"ADT^A99": 1}}


def test_yonglink_map_names_the_closest_routes_and_why_they_did_not_match(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = tmp_path / "a99.hl7"
    message.write_bytes(A99.format(org="NBH", cid="M1").encode())
    assert main(["map", "--input", str(message)]) == 1
    err = capsys.readouterr().err
    assert "matched routes: (none)" in err
    closest = [line for line in err.splitlines() if line.startswith("  closest: ")]
    assert len(closest) == 3
    assert all("message type ADT^A99 is not one of ADT^" in line for line in closest)
