"""No patient data in any log line at INFO or above (non-negotiable 5), checked on a real engine process.

Messages full of names, resident ID numbers, phones and addresses arrive over MLLP and HTTP (HL7 v2 and
FHIR), good and bad: mapped, failing mapping (errors quote the offending value), rejected at parse, and
delivered to a receiver that answers 422 echoing the record back (real receivers do). Every line the engine
writes at INFO and above (JSON logs on stderr) is scanned for each piece of patient data.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from channels.mllp.client import MllpClient

REPO = Path(__file__).resolve().parents[2]
NAME, NAME_PINYIN = "欧阳建国", "OUYANG"
RESIDENT_ID, BAD_ID = "330203198503120171", "330203198503120172"
MOBILE, LANDLINE = "13805740123", "87123456"
STREET, HOUSE = "中山西路138号", "3幢502室"
SECRETS = (NAME, "建国", NAME_PINYIN, RESIDENT_ID, BAD_ID, "198503120", MOBILE, LANDLINE, STREET, HOUSE,
           "19851345")
"""Every piece of patient data the messages carry (`198503120` catches a partly masked ID number; `19851345`
is the bad birth date a mapping error quotes)."""

ADT = ("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20261101101523+0800||ADT^A01^ADT_A01|{cid}|P|2.5.1|||AL|NE|CHN|"
       "UNICODE UTF-8\r"
       "EVN|A01|20261101101500+0800\r"
       f"PID|1||0001234567^^^NBDYYY^PI~{{rid}}^^^CHN^NNCHN||欧阳^建国^^^^^L~{NAME_PINYIN}^JIANGUO^^^^^A||"
       f"{{dob}}|M|||{STREET}^{HOUSE}^宁波市^浙江省^315010^CHN^H^^330203||^PRN^CP^^86^^{MOBILE}~"
       f"^PRN^PH^^86^574^{LANDLINE}|||M^已婚^HL70002||Z1^^^NBDYYY^VN|{{rid}}|||HA^汉族^GB3304\r"
       "PV1|1|I|0310^0310-12^03^NBDYYY||||0451^陈^志明|||CAR^心血管内科||||7|||||IP|Z1\r")
PATIENT = {"resourceType": "Patient", "id": "p1", "meta": {"source": "urn:oid:2.16.156.10011.1.5#NBDYYY"},
           "identifier": [{"system": "urn:oid:2.16.156.10011.1.3", "value": RESIDENT_ID}],
           "name": [{"text": NAME, "family": "欧阳", "given": ["建国"]}],
           "telecom": [{"system": "phone", "value": MOBILE, "use": "mobile"}], "gender": "male",
           "birthDate": "1985-03-12", "address": [{"line": [STREET, HOUSE], "city": "宁波市"}]}
ROUTE = """\
id: echo_person
match:
  message_type: ADT^A01
passthrough: true
destinations: [echoing_receiver]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def echoing_receiver() -> tuple[web.AppRunner, int]:
    """An HTTP receiver that refuses every record with 422 and quotes it back, as real receivers do."""
    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        return web.Response(status=422, text=f"invalid record: {body}")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]


async def test_no_patient_data_in_any_log_line_at_info_or_above(tmp_path: Path) -> None:
    runner, sink_port = await echoing_receiver()
    http_port, admin_port = free_port(), free_port()
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "echo.yaml").write_text(ROUTE, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(f"""
engine:
  store: {{path: var/privacy.db}}
  admin: {{listen: "127.0.0.1:{admin_port}"}}
  log: {{format: json, level: debug, redact: true}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0", ack: after_processing}}
  - name: web
    type: http
    http: {{listen: "127.0.0.1:{http_port}"}}
destinations:
  - name: echoing_receiver
    type: http
    retry: {{max_attempts: 2, initial_delay: 0.05s, max_delay: 0.1s}}
    http: {{url: "http://127.0.0.1:{sink_port}/records"}}
routes:
  - {REPO / "mappings" / "adt_person.yaml"}
  - {REPO / "mappings" / "fhir_patient_person.yaml"}
  - routes/*.yaml
""", encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.cli", "run", "--config", str(tmp_path / "config.yaml"), cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stderr is not None
    lines: list[bytes] = []
    mllp_port = None
    try:
        async with asyncio.timeout(60):
            while mllp_port is None:
                line = await proc.stderr.readline()
                assert line, f"engine exited early: {await proc.wait()}"
                lines.append(line)
                event = json.loads(line) if line.startswith(b"{") else {}
                if event.get("event") == "mllp listening":
                    mllp_port = int(str(event["listen"]).rsplit(":", 1)[1])

        async def collect() -> None:
            assert proc.stderr is not None
            while line := await proc.stderr.readline():
                lines.append(line)
        collector = asyncio.create_task(collect())

        async with MllpClient("127.0.0.1", mllp_port) as client:
            await client.send(ADT.format(cid="OK1", rid=RESIDENT_ID, dob="19850312").encode())   # mapped
            await client.send(ADT.format(cid="BAD1", rid=BAD_ID, dob="19851345").encode())       # AE
            await client.send(f"MSH|^~\\&|HIS|NBDYYY\rPID|1||{RESIDENT_ID}||{NAME}|||{MOBILE}".encode())  # AR
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{http_port}"
            async with http.post(f"{base}/fhir/Patient", json=PATIENT,
                                 headers={"Content-Type": "application/fhir+json"}) as resp:
                assert resp.status < 300
            bad = {**PATIENT, "birthDate": "1985-13-45"}
            async with http.post(f"{base}/fhir/Patient", json=bad,
                                 headers={"Content-Type": "application/fhir+json"}) as resp:
                await resp.read()
            async with http.post(f"{base}/hl7v2", data=ADT.format(cid="OK2", rid=RESIDENT_ID, dob="19850312"),
                                 headers={"Content-Type": "x-application/hl7-v2+er7"}) as resp:
                assert resp.status < 300
            # wait until the receiver's 422s have dead-lettered both pass-through deliveries
            async with asyncio.timeout(30):
                while True:
                    async with http.get(f"http://127.0.0.1:{admin_port}/dlq") as resp:
                        if len((await resp.json())["items"]) >= 2:
                            break
                    await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await proc.wait()
        await runner.cleanup()
    await collector

    events: list[dict[str, Any]] = []
    for raw in lines:
        text = raw.decode("utf-8", errors="replace")
        try:
            events.append(json.loads(text))
        except ValueError:
            events.append({"level": "error", "event": text})  # a non-JSON line (traceback) counts as loud
    loud = [e for e in events if str(e.get("level", "")).lower() in ("info", "warning", "error", "critical")]
    assert len(loud) >= 5, "the engine logged too little for this check to mean anything"
    assert any(e.get("event") == "destination down" or "dead" in str(e.get("event")) or
               e.get("level") == "warning" for e in loud), "no delivery failure was logged"
    leaks = [(secret, e) for e in loud for secret in SECRETS
             if secret in json.dumps(e, ensure_ascii=False)]
    assert not leaks, f"patient data at INFO or above: {leaks[:3]}"
