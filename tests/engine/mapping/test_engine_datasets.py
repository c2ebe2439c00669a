"""The datasets of issue #12 end to end: a real engine with an MLLP and an HTTP channel on loopback,
the shipped routes, and a stub destination that receives every record.

Each test is the user story of the issue's "done when": an ORU CT report becomes an exam report and not
a lab report; a Bundle with vitals yields vital-sign records; A11 after A01 yields a delete of the
admission with its key; A40 yields a merge record.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from channels.mllp.client import MllpClient
from channels.stub import StubOutbound
from engine.config import Config
from engine.runtime import Engine
from engine.types import DeliveryItem

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "tests" / "samples"
CONFIG = f"""
engine:
  store: {{path: var/datasets.db}}
  admin: {{listen: "127.0.0.1:0"}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
  - name: fhir
    type: http
    http: {{listen: "127.0.0.1:0", split_bundles: false}}
destinations:
  - name: platform
    type: stub
    routes: ["*"]
routes: ["{ROOT}/mappings/*.yaml"]
"""
PV1_A11 = ["PV1", "1", "I", "0310^0310-12^03^NBDYYY"] + [""] * 15 + ["Z20240301001^^^NBDYYY^VN"] + [""] * 24
A11 = "\r".join([
    "MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301113000+0800||ADT^A11^ADT_A09|C1|P|2.5.1",
    "EVN|A11|20240301113000+0800",
    "PID|1||0001234567^^^NBDYYY^PI~330203198503120171^^^CHN^NNCHN||王^建国||19850312|M",
    "|".join([*PV1_A11, "20240301100800+0800"]),
]).encode() + b"\r"


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def records(dataset: str) -> list[dict[str, Any]]:
    items: list[DeliveryItem] = StubOutbound.received.get("platform", [])
    return [json.loads(i.payload) for i in items if i.dataset == dataset]


async def send_hl7(engine: Engine, *messages: bytes) -> None:
    port = engine.channels["his"].inbound.describe()["listen"].rsplit(":", 1)[1]  # type: ignore[union-attr]
    async with MllpClient("127.0.0.1", int(port)) as client:
        for raw in messages:
            ack = await client.send(raw.replace(b"\r\n", b"\r"))
            assert b"MSA|AA|" in ack or b"MSA|CA|" in ack, ack


async def test_a_ct_report_over_mllp_becomes_an_exam_report_and_no_lab_report(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """The RIS sends an ORU^R01 CT report: the platform receives an exam report with findings and
    impression, and no lab report."""
    StubOutbound.received.clear()
    engine: Engine = await engine_factory(make_config(CONFIG))
    await send_hl7(engine, (SAMPLES / "oru_r01_v24_ct.hl7").read_bytes())
    [exam] = await until(lambda: records("exam_report"))
    assert (exam["report_no"], exam["modality_code"]) == ("CT240318017", "CT")
    assert exam["impression"].startswith("右侧附件区囊性占位")
    assert records("lab_report") == []


async def test_an_a11_after_an_a01_deletes_the_admission_it_created(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """A01 then A11 for the same inpatient number: the admission is created, then deleted by its key."""
    StubOutbound.received.clear()
    engine: Engine = await engine_factory(make_config(CONFIG))
    await send_hl7(engine, (SAMPLES / "adt_a01_v251_utf8.hl7").read_bytes(), A11)
    admissions = await until(
        lambda: len(records("inpatient_admission")) == 2 and records("inpatient_admission"))
    ops = sorted((r["envelope"]["operation"], r["inpatient_no"]) for r in admissions)
    assert ops == [("create", "Z20240301001"), ("delete", "Z20240301001")]


async def test_an_a40_over_mllp_yields_a_merge_record(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """The EMPI merges two patients: the platform receives the surviving and the retired id."""
    StubOutbound.received.clear()
    engine: Engine = await engine_factory(make_config(CONFIG))
    await send_hl7(engine, (SAMPLES / "adt_a40_v24.hl7").read_bytes())
    [merge] = await until(lambda: records("person_merge"))
    assert (merge["patient_id"], merge["retired_patient_id"]) == ("M00987612", "M00991234")


async def test_a_bundle_of_vital_signs_over_http_yields_vital_sign_records(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """A nursing system POSTs a transaction Bundle of six vital-sign Observations: six records arrive."""
    StubOutbound.received.clear()
    engine: Engine = await engine_factory(make_config(CONFIG))
    url = "http://" + engine.channels["fhir"].inbound.describe()["listen"]  # type: ignore[union-attr]
    body = (SAMPLES / "fhir" / "bundle_vital_signs.json").read_bytes()
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/fhir", data=body, headers={"Content-Type": "application/fhir+json"}) as resp:
        assert resp.status == 201, await resp.text()
    vitals = await until(lambda: len(records("vital_sign")) == 6 and records("vital_sign"))
    by_code = {r["item_code"]: r for r in vitals}
    assert (by_code["85354-9"]["systolic_bp"], by_code["85354-9"]["diastolic_bp"]) == (138, 86)
    assert by_code["8310-5"]["body_temperature"] == 36.8
