"""FHIR intake as real senders send it: a real engine, its HTTP channel on 127.0.0.1 port 0, the
shipped FHIR routes, and Bundles shaped like the FHIR R4B examples (Bundle-bundle-request-*.json,
Bundle-bundle-transaction.json, Immunization-example.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from backends import SQLITE_ONLY

from engine.cli import main
from engine.fhir.bundle import DERIVED_SYSTEM, derived_identifier
from engine.runtime import Engine

pytestmark = pytest.mark.both_backends

REPO = Path(__file__).resolve().parents[3]
FJSON = {"Content-Type": "application/fhir+json"}

CONFIG = """
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
channels:
  - name: web
    type: http
{org}    http:
      listen: "127.0.0.1:0"
      split_bundles: {split}
routes: [{routes}]
"""

# CVX 20 (DTaP): the one CVX code mappings/tables/cvx_to_national_vaccine.yaml maps (fhir_immunization's
# by_system refuses an unmapped CVX code and any coding system other than http://hl7.org/fhir/sid/cvx).
IMMUNIZATION = {"resourceType": "Immunization", "id": "imm-1", "status": "completed",
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "20"}],
                                "text": "百白破疫苗"},
                "patient": {"reference": "Patient/p1"}, "occurrenceDateTime": "2024-03-01"}
ENCOUNTER = {"resourceType": "Encounter", "id": "e1", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "Hb"}}


async def start(make_config: Any, engine_factory: Any, *, org: str | None = None, split: bool = True,
                routes: str = "") -> tuple[Engine, str]:
    routes = routes or str(REPO / "mappings" / "fhir_*.yaml")
    text = CONFIG.format(org=f"    source_org: {org}\n" if org else "", split=str(split).lower(),
                         routes=routes)
    engine: Engine = await engine_factory(make_config(text))
    inbound = engine.channels["web"].inbound
    assert inbound is not None
    return engine, inbound.describe()["url"].rstrip("/")


async def post(url: str, body: Any) -> tuple[int, list[str]]:
    """POST FHIR JSON; the HTTP status and the stored message ids the OperationOutcome names."""
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/fhir", data=orjson.dumps(body), headers=FJSON) as resp:
        outcome = orjson.loads(await resp.read())
        ids = [m.group(1) for i in outcome["issue"]
               if (m := re.search(r"stored as message (\S+)", i["diagnostics"]))]
        return resp.status, ids


async def results(engine: Engine, ids: list[str]) -> list[dict[str, Any]]:
    """Every route result of the messages, once they are processed."""
    for mid in ids:
        assert await engine.channels["web"].wait_processed(mid, timeout=10) is not None
    rows = await engine.store.read(lambda c: c.execute(
        f"SELECT r.route_id, r.record, r.filtered, r.error FROM results r JOIN messages m ON m.id ="
        f" r.message_id WHERE r.message_id IN ({','.join('?' * len(ids))}) ORDER BY m.seq, r.route_id",
        ids).fetchall())
    return [{"route": r[0], "record": orjson.loads(r[1]) if r[1] else None, "filtered": r[2], "error": r[3]}
            for r in rows]


@SQLITE_ONLY  # also runs `yonglink quality`, which reads the store the config file names (SQLite)
async def test_a_resource_naming_no_sender_takes_the_channels_source_org(
        make_config: Any, engine_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An Immunization without MessageHeader, meta.source or an Organization maps with the channel's
    `source_org`; one whose meta.source names its sender keeps that sender. `yonglink quality` counts a
    failure of such a message against the channel's organisation too."""
    engine, url = await start(make_config, engine_factory, org="NB330201")
    status, ids = await post(url, IMMUNIZATION)
    named = {**IMMUNIZATION, "id": "imm-2", "meta": {"source": "http://his.nbdyyy.cn/fhir/NBDYYY"}}
    status2, ids2 = await post(url, named)
    unnamed = {**IMMUNIZATION, "id": "imm-3", "vaccineCode": {"coding": [{"code": "08"}]}}
    status3, ids3 = await post(url, unnamed)
    assert (status, status2, status3) == (201, 201, 201)
    [own, other, failed] = await results(engine, ids + ids2 + ids3)
    assert own["record"]["envelope"]["source_org"] == "NB330201", own
    assert other["record"]["envelope"]["source_org"] == "NBDYYY"
    assert "vaccine_name" in failed["error"]
    live = engine.status()["quality"]["organisations"]
    assert main(["quality", "--json", "--config", str(engine.config.file)]) == 0
    out = capsys.readouterr().out
    stored = json.JSONDecoder().raw_decode(out[out.index("{\n"):])[0]["organisations"]
    for report in (live, stored):
        counts = report["NB330201"]["immunization"]
        assert (counts["mapped"], counts["failed"]) == (1, 1), report


async def test_without_source_org_a_resource_naming_no_sender_fails_saying_so(make_config: Any,
                                                                             engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    _, ids = await post(url, IMMUNIZATION)
    [only] = await results(engine, ids)
    assert "no sending organisation" in only["error"]


async def test_an_immunization_without_identifier_gets_a_deterministic_derived_one(
        make_config: Any, engine_factory: Any) -> None:
    """vaccination_no is derived from sender + Immunization/<id>: the same on a resend, not the bare id."""
    engine, url = await start(make_config, engine_factory, org="NB330201")
    _, first = await post(url, IMMUNIZATION)
    _, again = await post(url, {**IMMUNIZATION, "meta": {"versionId": "2"}})
    records = [r["record"] for r in await results(engine, first + again)]
    expected = derived_identifier("Immunization", "imm-1", "NB330201")
    assert [r["vaccination_no"] for r in records] == [expected, expected]
    assert expected != derived_identifier("Immunization", "imm-1", "NBDYYY")
    assert len(expected) == 20 and DERIVED_SYSTEM.startswith("urn:")  # report_no is AN..20


@SQLITE_ONLY  # also runs `yonglink quality`, which reads the store the config file names (SQLite)
async def test_bundle_entries_no_route_takes_are_recorded_and_counted_per_resource_type(
        make_config: Any, engine_factory: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A transaction of Immunization + Encounter + Observation: the two no route takes are stored as
    `(unrouted)` results and counted in /status quality.unrouted by resource type."""
    engine, url = await start(make_config, engine_factory, org="NB330201")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        for r in (IMMUNIZATION, ENCOUNTER, OBSERVATION)]}
    status, ids = await post(url, bundle)
    assert status == 201 and len(ids) == 3
    got = await results(engine, ids)
    assert [g["route"] for g in got] == ["fhir_immunization", "(unrouted)", "(unrouted)"]
    assert [g["filtered"] for g in got[1:]] == ["no route takes Bundle.entry[1] (Encounter) from NB330201",
                                               "no route takes Bundle.entry[2] (Observation) from NB330201"]
    counted = {"NB330201": {"Encounter": 1, "Observation": 1}}
    assert engine.status()["quality"]["unrouted"] == counted
    assert main(["quality", "--json", "--config", str(engine.config.file)]) == 0  # recomputed from the store
    out = capsys.readouterr().out  # the engine's own log lines are on stdout too
    report, _ = json.JSONDecoder().raw_decode(out[out.index("{\n"):])
    assert report["unrouted"] == counted


async def test_entries_of_a_bundle_stored_whole_are_recorded_too(make_config: Any,
                                                                 engine_factory: Any) -> None:
    """With split_bundles: false the Bundle is one message; its unrouted entries are its results."""
    engine, url = await start(make_config, engine_factory, org="NB330201", split=False)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": IMMUNIZATION}, {"resource": ENCOUNTER}]}
    _, ids = await post(url, bundle)
    got = await results(engine, ids)
    assert [(g["route"], g["filtered"]) for g in got] == [
        ("(unrouted)", "no route takes Bundle.entry[1] (Encounter) from NB330201"),
        ("fhir_immunization", None)]
    assert engine.status()["quality"]["unrouted"] == {"NB330201": {"Encounter": 1}}


DELETE_ROUTE = """\
id: immunization_keys
match: {resource_type: Immunization}
target: immunization
fields:
  vaccination_no: {paths: [Immunization.identifier.value, Immunization.id], transforms: [first]}
  vaccine_name: {const: 乙肝疫苗}
  vaccination_date: {const: "20240301"}
  patient_id: {const: P1}
"""


@pytest.mark.parametrize("split", [True, False], ids=["split", "whole"])
async def test_a_delete_entry_maps_with_the_delete_operation(tmp_path: Path, make_config: Any,
                                                             engine_factory: Any, split: bool) -> None:
    """`DELETE Immunization/imm-1` and a conditional `DELETE Immunization?identifier=...` in a
    transaction: each is routed as the resource it deletes, with envelope.operation delete."""
    route = tmp_path / "keys.yaml"
    route.write_text(DELETE_ROUTE, encoding="utf-8")
    engine, url = await start(make_config, engine_factory, org="NB330201", split=split, routes=str(route))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Immunization/imm-1"}},
        {"request": {"method": "DELETE", "url": "Immunization?identifier=urn:nb:imm|V-77"}},
        {"resource": IMMUNIZATION, "request": {"method": "PUT", "url": "Immunization/imm-1"}}]}
    status, ids = await post(url, bundle)
    assert status == 201
    records = [g["record"] for g in await results(engine, ids)]
    derived = derived_identifier("Immunization", "imm-1", "NB330201")
    assert [(r["envelope"]["operation"], r["vaccination_no"]) for r in records] == [
        ("delete", derived), ("delete", "V-77"), ("update", derived)]


async def test_a_delete_entry_whose_url_names_no_resource_is_a_400_naming_the_entry(
        make_config: Any, engine_factory: Any) -> None:
    _, url = await start(make_config, engine_factory)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "DELETE", "url": "Nonsense/1"}}]}
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/fhir", data=orjson.dumps(bundle), headers=FJSON) as resp:
        assert resp.status == 400
        outcome = orjson.loads(await resp.read())
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[0].request.url"]


async def test_a_batch_of_requests_only_and_a_searchset_are_accepted(make_config: Any,
                                                                    engine_factory: Any) -> None:
    """A batch of GETs (Bundle-bundle-request-medsallergies.json's shape) and searchsets, empty or
    not, are stored (201), never refused with "no entry with a resource"."""
    engine, url = await start(make_config, engine_factory, org="NB330201")
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "/Patient/example"}},
        {"request": {"method": "GET", "url": "/MedicationStatement?patient=example"}}]}
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    found = {"resourceType": "Bundle", "type": "searchset", "total": 1,
             "entry": [{"resource": OBSERVATION, "search": {"mode": "match"}}]}
    statuses = []
    ids: list[str] = []
    for body in (batch, empty, found):
        status, stored = await post(url, body)
        statuses.append(status)
        ids += stored
    assert statuses == [201, 201, 201] and len(ids) == 3
    got = await results(engine, ids)
    assert [g["filtered"] for g in got] == ["no route takes Bundle from NB330201"] * 2 + [
        "no route takes Bundle.entry[0] (Observation) from NB330201"]
