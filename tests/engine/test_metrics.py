"""`/metrics` by Prometheus convention: counters `_total` without `_created`, current values as gauges,
destination up/down, process and GC metrics, and per-organisation quality counters with bounded labels."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from channels.mllp.client import MllpClient
from engine.config import Config
from engine.metrics import MAX_ORG_LABELS, Metrics, quality_family
from engine.runtime import Engine

PERSON_ROUTE = Path(__file__).resolve().parents[2] / "mappings" / "adt_person.yaml"
CONFIG = f"""
engine:
  store: {{path: var/metrics.db}}
  admin: {{listen: "127.0.0.1:0"}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
destinations:
  - name: ok_sink
    type: stub
  - name: down_sink
    type: stub
    retry: {{max_attempts: 100, initial_delay: 0.01s, max_delay: 0.02s}}
    stub: {{fail_first: 1000}}
routes:
  - {PERSON_ROUTE}
  - routes/*.yaml
"""
ROUTE = """\
id: both_sinks
match:
  message_type: ADT^A04
passthrough: true
destinations: [ok_sink, down_sink]
"""
ADT = ("MSH|^~\\&|HIS|{org}|EMPI|NB|20261101120000||ADT^A04|{cid}|P|2.5.1\r"
       "PID|1||P{cid}^^^{org}^PI||张^三||19900101|M\r")


async def scrape(engine: Engine) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{engine.admin.url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def test_a_running_engine_exports_metrics_by_convention(
        tmp_path: Path, make_config: Callable[[str], Config],
        engine_factory: Callable[[Config], Any]) -> None:
    """Two organisations send over MLLP; one destination takes everything, the other keeps failing
    until it is down. The scrape shows all of it under conventional names."""
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "both.yaml").write_text(ROUTE, encoding="utf-8")
    engine: Engine = await engine_factory(make_config(CONFIG))
    host, port = str(engine.channels["his"].describe()["listen"]).rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        for i, org in enumerate(("NBH", "NBH", "nbx")):
            assert b"MSA|AA|" in await client.send(ADT.format(org=org, cid=f"C{i}").encode())
    deadline = time.monotonic() + 20
    while not any(d["name"] == "down_sink" and d["state"] == "down" for d in engine.delivery.status()):
        assert time.monotonic() < deadline, "down_sink never went down"
        await asyncio.sleep(0.05)
    text = await scrape(engine)

    assert "_created" not in text
    for family in re.findall(r"^# TYPE (\S+) counter$", text, re.M):
        samples = re.findall(rf"^({re.escape(family)}\w*)[{{ ]", text, re.M)
        assert all(s.endswith("_total") for s in samples), (family, samples)
    assert "# TYPE yonglink_store_commits_total counter" in text
    assert re.search(r"^yonglink_store_commits_total [1-9]", text, re.M)
    assert 'yonglink_destination_up{destination="ok_sink"} 1.0' in text
    assert 'yonglink_destination_up{destination="down_sink"} 0.0' in text
    assert re.search(r"^process_resident_memory_bytes \d", text, re.M)
    assert re.search(r"^process_open_fds \d", text, re.M)
    assert "python_gc_collections_total" in text
    assert 'yonglink_quality_records_total{dataset="person",org="NBH",outcome="mapped"} 2.0' in text
    assert 'yonglink_quality_records_total{dataset="person",org="nbx",outcome="mapped"} 1.0' in text


def test_organisation_labels_are_bounded_and_the_rest_summed_as_other() -> None:
    """250 senders: the 200 busiest keep their label, the 50 quietest become `other`, nothing is lost."""
    orgs = {f"ORG{i:03d}": {"person": {"mapped": i + 1, "failed": 0, "filtered": 0}} for i in range(250)}
    family = quality_family({"organisations": orgs})
    mapped = {s.labels["org"]: s.value for s in family.samples if s.labels["outcome"] == "mapped"}
    assert len(mapped) == MAX_ORG_LABELS + 1
    assert "ORG249" in mapped and "ORG000" not in mapped
    assert mapped["other"] == sum(range(1, 51))
    assert sum(mapped.values()) == sum(range(1, 251))


def test_a_down_destination_is_0_and_a_disabled_one_is_not_exported() -> None:
    metrics = Metrics()
    metrics.update_from_status({"destinations": [{"name": "a", "state": "ok"}, {"name": "b", "state": "down"},
                                                 {"name": "c", "state": "blocked"},
                                                 {"name": "d", "state": "disabled"}]}, now=time.time())
    text = metrics.render().decode()
    assert 'yonglink_destination_up{destination="a"} 1.0' in text
    assert 'yonglink_destination_up{destination="b"} 0.0' in text
    assert 'yonglink_destination_up{destination="c"} 1.0' in text
    up = [line for line in text.splitlines() if line.startswith("yonglink_destination_up{")]
    assert len(up) == 3 and not any('destination="d"' in line for line in up)
