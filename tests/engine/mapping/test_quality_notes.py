"""A display text cut at its limit is counted, live and from the store, while the record is kept."""

from __future__ import annotations

import json
from pathlib import Path

from engine.mapping import build_router
from engine.mapping.quality import QualityCounter
from engine.types import HL7V2, MessageState, StoredMessage

REPO = Path(__file__).resolve().parents[3]
LONG_NAME = ("急性心肌梗死伴有心源性休克及多器官功能障碍综合征"
             "需要进一步检查和治疗的复杂病例说明文字超过五十个字符的诊断名称")
MESSAGE = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301101523||ADT^A01^ADT_A01|Q1|P|2.5.1\r"
           "PID|1||P1^^^NBDYYY^PI||王^建国||19850312|M\r"
           "PV1|1|I|||||||||||||||||Z1\r"
           f"DG1|1||I21.9^{LONG_NAME}^ICD10\r")


def test_a_truncated_diagnosis_name_is_kept_cut_and_counted() -> None:
    """The diagnosis record is mapped with the name cut to 50 characters; quality counts one truncation,
    and recomputing from the stored record gives the same count."""
    router = build_router([REPO / "mappings" / "adt_diagnosis.yaml"])
    msg = StoredMessage(id="Q1", channel="his", received_at=1710000000.0, content_type=HL7V2,
                        state=MessageState.RECEIVED, raw=MESSAGE.encode())
    [result] = router.route(msg)
    assert result.error is None and isinstance(result.record, dict)
    assert result.record["diagnosis_name"] == LONG_NAME[:50]
    assert result.record["envelope"]["truncated"] == ["diagnosis_name"]
    live = router.quality_snapshot()["organisations"]["NBDYYY"]["diagnosis"]
    assert live["mapped"] == 1 and live["fields"]["diagnosis_name"]["truncated"] == 1
    stored = QualityCounter()
    stored.observe("NBDYYY", "diagnosis", record=json.loads(json.dumps(result.record)))
    assert stored.snapshot()["organisations"]["NBDYYY"]["diagnosis"]["fields"]["diagnosis_name"] == {
        "missing": 0, "invalid": 0, "truncated": 1}
