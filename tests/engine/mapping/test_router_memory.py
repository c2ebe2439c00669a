"""Routing leaves no reference cycle behind: a mapped message is freed by reference counting at once,
not later by the cyclic garbage collector (which, end to end, ran every few messages and walked the
whole heap: issue #13, one node closer to its ceiling)."""

from __future__ import annotations

import gc
from pathlib import Path

from engine.hl7v2.er7 import Er7Message
from engine.hl7v2.segment import Segment
from engine.mapping import build_router
from engine.types import HL7V2, MessageState, StoredMessage

REPO = Path(__file__).resolve().parents[3]
MESSAGE = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|Q1|P|2.5.1\r"
           "PID|1||P1^^^NBDYYY^PI||王^建国||19850312|M\r"
           "PV1|1|I|||||||||||||||||Z1\r"
           "DG1|1||I21.9^ACUTE MYOCARDIAL INFARCTION^ICD10\r")


def test_a_routed_hl7_message_and_its_segments_are_not_left_to_the_cyclic_collector() -> None:
    router = build_router([REPO / "mappings" / "adt_diagnosis.yaml"])
    msg = StoredMessage(id="Q1", channel="his", received_at=1710000000.0, content_type=HL7V2,
                        state=MessageState.RECEIVED, raw=MESSAGE.encode())
    router.route(msg)  # first use compiles and caches what every later message shares
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector would free now lands in gc.garbage instead
    try:
        [result] = router.route(msg)
        gc.collect()
        cyclic = [type(o).__name__ for o in gc.garbage if isinstance(o, Er7Message | Segment)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert result.error is None and result.record is not None
    assert cyclic == []
