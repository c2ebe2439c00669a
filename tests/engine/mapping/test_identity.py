"""The shared identity block: channel conventions, the invalid-ID policy, its quality counts, config errors.

The conventions themselves (each HL7 version, FHIR) are route tests: mappings/tests/identity.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import ConfigError
from engine.mapping import build_router
from engine.mapping.router import Router
from engine.types import HL7V2, MessageState, StoredMessage

REPO = Path(__file__).resolve().parents[3]
SAMPLES = REPO / "tests" / "samples"

ROUTE = """\
id: person_site
match:
  message_type: ADT^A04|ADT^A08
target: person
identity:
{identity}
fields:
  name: PID-5.1
  sex_code:
    path: PID-8
    transforms: [{{lookup: hl7_0001_to_gbt_2261_1}}]
  marital_status_code:
    path: PID-16.1
    transforms: [{{lookup: hl7_0002_to_gbt_2261_2}}]
"""
SITE = """\
  conventions:
    - {cx5: "1", id_type: "01", channels: [his_beilun], source: "site-local CX.5 1 = citizen ID"}"""
BAD_ID = ("MSH|^~\\&|HIS|NBEY|HIP|NBWJW|20240305083012||ADT^A04|B1|P|2.4\r"
          "PID|1||M00987612^^^NBEY^PI~330212199207040283^^^CHN^NNCHN||陈晓燕||19920704|F\r")


def router(tmp_path: Path, identity: str) -> Router:
    path = tmp_path / "person_site.yaml"
    path.write_text(ROUTE.format(identity=identity), encoding="utf-8")
    return build_router([path])


def stored(raw: bytes, channel: str = "his") -> StoredMessage:
    return StoredMessage(id="M1", channel=channel, received_at=1710000000.0, content_type=HL7V2,
                         state=MessageState.RECEIVED, raw=raw)


def record(r: Router, raw: bytes, channel: str = "his") -> dict[str, Any]:
    [result] = r.route(stored(raw, channel))
    assert result.error is None, result.error
    assert isinstance(result.record, dict)
    return result.record


def test_a_channel_declares_its_site_local_cx5_code_for_the_citizen_id(tmp_path: Path) -> None:
    """The v2.4 HIS that sends the citizen ID with CX.5 = 1 is understood on its channel only."""
    r = router(tmp_path, SITE)
    raw = (SAMPLES / "adt_a04_v24.hl7").read_bytes()
    site = record(r, raw, channel="his_beilun")
    assert (site["id_number"], site["id_type_code"]) == ("330212199207040282", "01")
    assert site["envelope"]["id_source"] == "PID-3 CX.5=1"
    assert site["patient_id"] == "M00987612"
    other = record(r, raw, channel="his_other")
    assert "id_number" not in other and "id_source" not in other["envelope"]


def test_an_invalid_resident_id_fails_the_record_and_counts_as_invalid(tmp_path: Path) -> None:
    """Default policy: the record fails naming id_number and the masked ID; quality counts it invalid."""
    r = router(tmp_path, "  on_invalid: error")
    [result] = r.route(stored(BAD_ID.encode()))
    assert result.record is None and result.error is not None
    assert "id_number: PID-3 CX.5=NNCHN '330212********0283' has a wrong check character" in result.error
    assert "330212199207040283" not in result.error
    fields = r.quality_snapshot()["organisations"]["NBEY"]["person"]["fields"]
    assert fields["id_number"]["invalid"] == 1


def test_on_invalid_drop_keeps_the_record_without_the_id_and_counts_it(tmp_path: Path) -> None:
    """`on_invalid: drop`: the record is kept, id_number and its type left out, named in envelope.dropped
    and counted as an invalid id_number (the same count the failing default gives)."""
    r = router(tmp_path, "  on_invalid: drop")
    rec = record(r, BAD_ID.encode())
    assert "id_number" not in rec and "id_type_code" not in rec
    assert rec["envelope"]["dropped"] == ["id_number"]
    assert rec["patient_id"] == "M00987612"
    slot = r.quality_snapshot()["organisations"]["NBEY"]["person"]
    assert slot["mapped"] == 1 and slot["fields"]["id_number"]["invalid"] == 1


def test_quality_recomputed_from_the_store_counts_a_dropped_id(tmp_path: Path) -> None:
    """`yonglink quality` reads records back from the store: envelope.dropped is counted there too."""
    from engine.mapping.quality import QualityCounter

    r = router(tmp_path, "  on_invalid: drop")
    rec = record(r, BAD_ID.encode())
    counter = QualityCounter()
    counter.observe("NBEY", "person", record=json.loads(json.dumps(rec)))
    assert counter.snapshot()["organisations"]["NBEY"]["person"]["fields"]["id_number"]["invalid"] == 1


def test_every_shipped_route_that_carries_a_person_uses_the_identity_block() -> None:
    """Datasets with id_number get it from the one identity block, never from copied paths."""
    r = build_router(sorted((REPO / "mappings").glob("*.yaml")))
    carrying = [route for route in r.routes
                if route.dataset is not None and "id_number" in route.dataset.fields
                and route.dataset.id != "practitioner"]
    assert len(carrying) >= 12
    assert [route.id for route in carrying if route.identity is None] == []
    # The block reads the one person a message is about (PID, the FHIR patient; practitioners are staff,
    # not residents). A person merge also names the retired record (HL7 v2.5.1 MRG-1), which the block
    # cannot read: that retired resident ID is the only identity document a route may map itself, and
    # only through the GB 11643 check.
    explicit = {f"{route.id}.{fm.name}": [type(step).__name__ for step in fm.steps]
                for route in carrying for fm in route.fields
                if fm.name.endswith(("id_number", "id_type_code", "health_card_no"))}
    assert list(explicit) == ["adt_person_merge.retired_id_number"]
    assert "ResidentId" in explicit["adt_person_merge.retired_id_number"]


def test_every_dataset_that_carries_a_person_has_all_the_identity_fields() -> None:
    """A dataset with id_number also has id_type_code and health_card_no, so the block's health card
    (PID-3 CX.5 HC, the 健康卡号 OID) is never silently left out of a new dataset."""
    r = build_router(sorted((REPO / "mappings").glob("*.yaml")))
    datasets = {route.dataset.id: route.dataset.fields for route in r.routes
                if route.dataset is not None and "id_number" in route.dataset.fields
                and route.dataset.id != "practitioner"}
    assert len(datasets) >= 20
    assert sorted(name for name, fields in datasets.items()
                  if not {"id_type_code", "health_card_no"} <= set(fields)) == []


@pytest.mark.parametrize(("identity", "message"), [
    ("  on_invalid: ignore", "identity: on_invalid: must be error or drop"),
    ("  conventions:\n    - {cx5: \"1\", id_type: \"11\"}", "is not a CV02.01.101 code or HC"),
    ("  conventions:\n    - {cx5: 1}", "quote the code as text"),
    ("  conventions:\n    - {system: \"urn:x\"}", "system does not apply to a HL7 v2 route"),
    ("  conventions:\n    - {cx5: \"1\", cx4: \"CHN\"}", "give exactly one of"),
    ("  patient: Patient", "identity: patient: applies to FHIR routes only"),
    ("  on_invalid: drop\n  extra: 1", "identity: unknown key 'extra'"),
])
def test_a_bad_identity_block_names_file_and_line(tmp_path: Path, identity: str, message: str) -> None:
    """Every bad setting of the block is a ConfigError at load, with the route file and line."""
    with pytest.raises(ConfigError) as info:
        router(tmp_path, identity)
    assert message in str(info.value)
    assert "person_site.yaml:6)" in str(info.value)


def test_a_route_may_not_map_an_identity_field_itself(tmp_path: Path) -> None:
    """A second, copied way of filling id_number would defeat the shared block: a load error."""
    path = tmp_path / "r.yaml"
    path.write_text(ROUTE.format(identity="  on_invalid: error") + "  id_number: PID-19\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"id_number is filled by identity.*r\.yaml:\d+"):
        build_router([path])


CHANNEL_CONFIG = """\
engine:
  store: {{path: var/e.db}}
channels:
  - name: his_beilun
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
    identity:
      conventions:
        - {{cx5: "1", id_type: "01", source: "this HIS sends the citizen ID with CX.5 = 1"}}
{extra}
routes: ["{routes}/adt_person.yaml", "{routes}/adt_outpatient_visit.yaml"]
"""


def test_a_channel_in_the_config_declares_its_cx5_code_for_every_route(tmp_path: Path) -> None:
    """`channels[].identity.conventions` reach every route: the person and the visit record of the
    v2.4 HIS that sends CX.5 = 1 both carry its citizen ID; another channel's messages do not."""
    from engine.config import parse_config
    from engine.mapping import load_router

    extra = '  - name: his_other\n    type: mllp\n    mllp: {listen: "127.0.0.1:0"}'
    config = parse_config(CHANNEL_CONFIG.format(extra=extra, routes=REPO / "mappings"),
                          file=tmp_path / "yonglink.yaml")
    r = load_router(config)
    raw = (SAMPLES / "adt_a04_v24.hl7").read_bytes()
    results = r.route(stored(raw, channel="his_beilun"))
    assert sorted(res.route_id for res in results) == ["adt_outpatient_visit", "adt_person"]
    for res in results:
        assert res.error is None and isinstance(res.record, dict), res.error
        assert res.record["id_number"] == "330212199207040282"
        assert res.record["envelope"]["id_source"] == "PID-3 CX.5=1"
    for res in r.route(stored(raw, channel="his_other")):
        assert isinstance(res.record, dict) and "id_number" not in res.record


def test_a_bad_channel_convention_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    """An id_type outside CV02.01.101 in a channel's conventions is rejected when the config loads."""
    from engine.config import parse_config

    text = CHANNEL_CONFIG.format(extra="", routes=REPO / "mappings").replace('id_type: "01"', 'id_type: "11"')
    with pytest.raises(ConfigError) as info:
        parse_config(text, file=tmp_path / "yonglink.yaml")
    assert "yonglink.yaml:" in str(info.value) and "identity" in str(info.value)


def test_the_same_site_code_may_mean_different_documents_on_two_channels(tmp_path: Path) -> None:
    """CX.5 = 1 is the citizen ID at one hospital and a passport at another: each channel gets its own."""
    r = router(tmp_path, """\
  conventions:
    - {cx5: "1", id_type: "01", channels: [his_beilun]}
    - {cx5: "1", id_type: "03", channels: [his_foreign]}""")
    passport = (b"MSH|^~\\&|HIS|NBEY|HIP|NBWJW|20240305083012||ADT^A04|F1|P|2.4\r"
                b"PID|1||M1^^^NBEY^PI~E12345678^^^^1||SMITH^JOHN||19800101|M\r")
    assert (record(r, passport, "his_foreign")["id_type_code"]) == "03"
    beilun = record(r, (SAMPLES / "adt_a04_v24.hl7").read_bytes(), "his_beilun")
    assert (beilun["id_type_code"], beilun["id_number"]) == ("01", "330212199207040282")
