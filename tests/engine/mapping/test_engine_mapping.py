"""The engine maps with the shipped routes: outcomes, stored results and /status quality."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import Config
from engine.runtime import Engine
from engine.store import messages
from engine.types import HL7V2, InboundMessage, MessageState

MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"
CONFIG = f"""
engine:
  store: {{path: var/e.db}}
  admin: {{listen: "127.0.0.1:0"}}
channels:
  - name: his
    type: mllp
    enabled: false
    mllp: {{listen: "127.0.0.1:0"}}
    routes: [adt_person, adt_inpatient_admission]
routes: ["{MAPPINGS}/*.yaml"]
"""
GOOD = (Path(__file__).resolve().parents[3] / "tests" / "samples" / "adt_a01_v251_utf8.hl7").read_bytes()
BAD = b"MSH|^~\\&|HIS|NBX|EMPI|NBWJW|20240301||ADT^A04|B1|P|2.5.1\rPID|1||P1^^^NBX^PI||Wang||19851345|M"


def inbound(raw: bytes, facility: str) -> InboundMessage:
    return InboundMessage(channel="his", raw=raw, content_type=HL7V2, received_at=time.time(),
                          sending_facility=facility)


async def test_the_engine_maps_with_the_channels_routes_and_reports_quality(
        make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any]) -> None:
    """An A01 on a channel limited to two routes is mapped by those two; a bad A04 fails with file:line."""
    engine: Engine = await engine_factory(make_config(CONFIG))
    assert len(engine.router.routes) == len(list(MAPPINGS.glob("*.yaml")))
    rt = engine.channels["his"]
    good = await rt.accept(inbound(GOOD, "NBDYYY"))
    bad = await rt.accept(inbound(BAD, "NBX"))
    ok = await rt.wait_processed(good.message_id, timeout=10)
    failed = await rt.wait_processed(bad.message_id, timeout=10)
    assert ok is not None and ok.state is MessageState.MAPPED
    assert failed is not None and failed.state is MessageState.FAILED
    assert failed.error is not None
    assert "mappings/adt_person.yaml:23 birth_date: PID-7 '19851345' is not a valid date" in failed.error
    results = await engine.store.read(lambda c: messages.results_of(c, good.message_id))
    assert sorted(r["route_id"] for r in results) == ["adt_inpatient_admission", "adt_person"]
    quality = engine.status()["quality"]["organisations"]
    assert quality["NBDYYY"]["person"]["mapped"] == 1
    assert quality["NBX"]["person"]["failed"] == 1
    assert quality["NBX"]["person"]["fields"]["birth_date"]["invalid"] == 1
