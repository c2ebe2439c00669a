"""The HTTP inbound channel, end to end: a real engine, a real aiohttp server on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from engine.config import Config
from engine.runtime import Engine
from engine.store import messages
from engine.types import MessageState

pytestmark = pytest.mark.both_backends

# Shapes follow HL7 v2.5.1 ADT^A01 (§3.3.1) and the FHIR R4B Patient example (patient-example.json).
ADT = ("MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "EVN|A01|20240101120000\rPID|1||123456^^^NBH^MR||ZHANG^SAN||19800101|M\r")
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1980-01-01",
           "name": [{"family": "Li", "given": ["Si"]}]}
PATIENT_XML = (b'<Patient xmlns="http://hl7.org/fhir"><id value="p2"/><gender value="male"/>'
               b'<birthDate value="1975-05-06"/></Patient>')
HL7 = {"Content-Type": "x-application/hl7-v2+er7"}
FJSON = {"Content-Type": "application/fhir+json"}

CONFIG = """
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
channels:
  - name: web
    type: http
    http:
      listen: "127.0.0.1:0"
      max_body_bytes: 64KiB
{extra}
"""


async def start(make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
                extra: str = "") -> tuple[Engine, str]:
    engine: Engine = await engine_factory(make_config(CONFIG.format(extra=extra)))
    inbound = engine.channels["web"].inbound
    assert inbound is not None, engine.channels["web"].stats.last_error
    return engine, inbound.describe()["url"].rstrip("/")


async def all_messages(engine: Engine) -> list[tuple[str, str, bytes]]:
    rows = await engine.store.read(
        lambda c: c.execute("SELECT id, state, raw FROM messages ORDER BY seq").fetchall())
    return [(r[0], r[1], bytes(r[2])) for r in rows]


async def test_an_hl7v2_post_is_answered_aa_after_it_is_stored(make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    body = ADT.format(cid="C1").encode()
    async with aiohttp.ClientSession() as http, http.post(f"{url}/hl7v2", data=body, headers=HL7) as resp:
        assert resp.status == 200
        assert resp.content_type == "x-application/hl7-v2+er7"
        ack = (await resp.read()).decode()
    assert "\rMSA|AA|C1" in ack and ack.startswith("MSH|^~\\&|YONGLINK|NB|HIS|NBH|")
    stored = await all_messages(engine)
    assert len(stored) == 1 and stored[0][2] == body
    msg = await engine.store.read(lambda c: messages.get(c, stored[0][0]))
    assert msg is not None and msg.control_id == "C1" and msg.message_type == "ADT^A01"


async def test_unparseable_hl7v2_gets_ar_with_err_and_is_stored_rejected(make_config: Any,
                                                                        engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/hl7v2", data=b"PID|1||x\r", headers=HL7) as resp:
        assert resp.status == 200
        ack = (await resp.read()).decode()
    assert "\rMSA|AR|" in ack and "\rERR|" in ack
    stored = await all_messages(engine)
    assert [s[1] for s in stored] == ["rejected"]
    assert engine.channels["web"].stats.counts["rejected"] == 1


async def test_the_content_type_charset_decodes_the_message_and_the_ack_uses_it(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    body = ADT.format(cid="GB1").replace("ZHANG^SAN", "张^三").encode("gb18030")
    headers = {"Content-Type": "text/plain; charset=GB18030"}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/hl7v2", data=body, headers=headers) as resp:
        assert resp.status == 200 and resp.charset == "gb18030"
        assert "MSA|AA|GB1" in (await resp.read()).decode("gb18030")
    [(mid, _, raw)] = await all_messages(engine)
    stored = await engine.store.read(lambda c: messages.get(c, mid))
    assert stored is not None and stored.charset == "GB18030" and raw == body


async def test_a_batch_is_stored_as_one_message_each_and_answered_with_one_ack_as_mllp_does(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    batch = ("FHS|^~\\&|HIS|NBH\rBHS|^~\\&|HIS|NBH\r" + ADT.format(cid="B1") + ADT.format(cid="B2")
             + "BTS|2\rFTS|1\r").encode()
    async with aiohttp.ClientSession() as http, http.post(f"{url}/hl7v2", data=batch, headers=HL7) as resp:
        ack = (await resp.read()).decode()
    assert "\rMSA|AA|B1|batch of 2 messages accepted" in ack
    stored = await all_messages(engine)
    assert [s[2].split(b"|")[9] for s in stored] == [b"B1", b"B2"]


async def test_a_batch_with_an_unreadable_message_is_rejected_whole(make_config: Any,
                                                                    engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    batch = (ADT.format(cid="B3") + "MSH|^~\\&|HIS\r").encode()
    async with aiohttp.ClientSession() as http, http.post(f"{url}/hl7v2", data=batch, headers=HL7) as resp:
        ack = (await resp.read()).decode()
    assert "\rMSA|AR|B3|batch message 2: " in ack
    assert [(s[1], s[2]) for s in await all_messages(engine)] == [("rejected", batch)]


async def test_enhanced_mode_msh15_gets_a_ca_commit_acknowledgment(make_config: Any,
                                                                   engine_factory: Any) -> None:
    _, url = await start(make_config, engine_factory)
    body = ADT.format(cid="E1").replace("|P|2.5.1\r", "|P|2.5.1|||AL|NE\r", 1).encode()
    async with aiohttp.ClientSession() as http, http.post(f"{url}/hl7v2", data=body, headers=HL7) as resp:
        assert "\rMSA|CA|E1" in (await resp.read()).decode()


async def test_a_fhir_patient_in_json_is_stored_and_answered_201_with_its_id(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/fhir/Patient", data=orjson.dumps(PATIENT), headers=FJSON) as resp:
        assert resp.status == 201
        outcome = orjson.loads(await resp.read())
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "information" and issue["code"] == "informational"
    [(mid, _, raw)] = await all_messages(engine)
    assert mid in issue["diagnostics"] and raw == orjson.dumps(PATIENT)
    msg = await engine.store.read(lambda c: messages.get(c, mid))
    assert msg is not None and msg.message_type == "Patient" and msg.content_type == "application/fhir+json"


async def test_a_fhir_patient_in_xml_is_stored_and_answered_201_in_xml(make_config: Any,
                                                                       engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    headers = {"Content-Type": "application/fhir+xml"}
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/fhir", data=PATIENT_XML, headers=headers) as resp:
        assert resp.status == 201 and resp.content_type == "application/fhir+xml"
        text = (await resp.read()).decode()
    [(mid, _, raw)] = await all_messages(engine)
    assert "<OperationOutcome" in text and mid in text and raw == PATIENT_XML


@pytest.mark.parametrize(("body", "path", "expected"), [
    (orjson.dumps({**PATIENT, "birthDate": 19800101}), "Patient", "Patient.birthDate"),
    (orjson.dumps({"resourceType": "Pateint", "id": "x"}), "", "resourceType"),
    (orjson.dumps(PATIENT), "Observation", "resourceType"),
], ids=["wrong-type-birthDate", "unknown-resourceType", "path-mismatch"])
async def test_invalid_fhir_gets_400_naming_the_element_path_and_is_stored_rejected(
        make_config: Any, engine_factory: Any, body: bytes, path: str, expected: str) -> None:
    engine, url = await start(make_config, engine_factory)
    target = f"{url}/fhir/{path}" if path else f"{url}/fhir"
    async with aiohttp.ClientSession() as http, http.post(target, data=body, headers=FJSON) as resp:
        assert resp.status == 400
        outcome = orjson.loads(await resp.read())
    errors = [i for i in outcome["issue"] if i["severity"] == "error"]
    assert expected in [e for i in errors for e in i.get("expression", [])]
    assert [s[1] for s in await all_messages(engine)] == ["rejected"]


async def test_malformed_fhir_json_gets_400_naming_line_and_column(make_config: Any,
                                                                   engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/fhir", data=b'{"resourceType": "Patient",', headers=FJSON) as resp:
        assert resp.status == 400
        outcome = orjson.loads(await resp.read())
    assert "malformed JSON at line 1 column" in outcome["issue"][0]["diagnostics"]
    assert [s[1] for s in await all_messages(engine)] == ["rejected"]


@pytest.mark.parametrize("endpoint", ["hl7v2", "fhir"])
async def test_an_unsupported_content_type_gets_415_and_nothing_is_stored(
        make_config: Any, engine_factory: Any, endpoint: str) -> None:
    engine, url = await start(make_config, engine_factory)
    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/{endpoint}", data=b"<x/>", headers={"Content-Type": "application/pdf"}) as resp:
        assert resp.status == 415
    assert await all_messages(engine) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_max_body_bytes_gets_413_and_nothing_is_stored(
        make_config: Any, engine_factory: Any, chunked: bool) -> None:
    engine, url = await start(make_config, engine_factory)
    big = ADT.format(cid="BIG").encode() + b"NTE|1||" + b"x" * 70_000 + b"\r"

    async def chunks() -> Any:
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    async with aiohttp.ClientSession() as http, http.post(
            f"{url}/hl7v2", data=chunks() if chunked else big, headers=HL7) as resp:
        assert resp.status == 413
    assert await all_messages(engine) == []


AUTH = """    http:
      listen: "127.0.0.1:0"
      auth: {bearer_token_env: YL_TEST_TOKEN, api_key_env: [YL_TEST_KEY]}
"""


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"},
                                     {"Authorization": "Basic c2VjcmV0"}],
                         ids=["missing", "bad-token", "bad-key", "wrong-scheme"])
async def test_a_request_without_a_valid_token_gets_401_and_nothing_is_stored(
        make_config: Any, engine_factory: Any, monkeypatch: pytest.MonkeyPatch,
        headers: dict[str, str]) -> None:
    monkeypatch.setenv("YL_TEST_TOKEN", "secret-token")
    monkeypatch.setenv("YL_TEST_KEY", "secret-key")
    engine: Engine = await engine_factory(make_config(CONFIG.format(extra="").replace(
        '    http:\n      listen: "127.0.0.1:0"\n      max_body_bytes: 64KiB\n', AUTH)))
    url = engine.channels["web"].inbound.describe()["url"]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        for endpoint, ctype in (("hl7v2", HL7), ("fhir", FJSON)):
            async with http.post(f"{url}{endpoint}", data=b"MSH|", headers={**ctype, **headers}) as resp:
                assert resp.status == 401
        async with http.post(f"{url}fhir", data=orjson.dumps(PATIENT),
                             headers={**FJSON, "Authorization": "Bearer secret-token"}) as resp:
            assert resp.status == 201
        async with http.post(f"{url}hl7v2", data=ADT.format(cid="K").encode(),
                             headers={**HL7, "X-API-Key": "secret-key"}) as resp:
            assert resp.status == 200
    assert len(await all_messages(engine)) == 2


async def test_an_unauthenticated_expect_100_continue_request_is_refused_before_the_body_is_sent(
        make_config: Any, engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YL_TEST_TOKEN", "secret-token")
    monkeypatch.setenv("YL_TEST_KEY", "secret-key")
    engine: Engine = await engine_factory(make_config(CONFIG.format(extra="").replace(
        '    http:\n      listen: "127.0.0.1:0"\n      max_body_bytes: 64KiB\n', AUTH)))
    port = engine.channels["web"].inbound.port  # type: ignore[union-attr]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    await writer.wait_closed()
    assert status.startswith(b"HTTP/1.1 401")


async def test_an_idempotent_retry_is_stored_once_and_answered_with_the_same_id(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    headers = {**FJSON, "Idempotency-Key": "order-42"}
    answers = []
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(f"{url}/fhir/Patient", data=orjson.dumps(PATIENT), headers=headers) as resp:
                answers.append((resp.status, orjson.loads(await resp.read())["issue"][0]["diagnostics"]))
    [(mid, _, _)] = await all_messages(engine)
    assert answers[0][0] == 201 and answers[1][0] == 200
    assert mid in answers[0][1] and mid in answers[1][1]
    assert engine.channels["web"].stats.counts["duplicate"] == 1


async def test_a_transaction_bundle_is_stored_per_entry_and_deduplicated_by_its_identifier(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "identifier": {"system": "urn:nbh:batch", "value": "b-7"},
              "entry": [{"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}},
                        {"resource": {**PATIENT, "id": "p9"},
                         "request": {"method": "POST", "url": "Patient"}}]}
    async with aiohttp.ClientSession() as http:
        for expected in (201, 200):
            async with http.post(f"{url}/fhir", data=orjson.dumps(bundle), headers=FJSON) as resp:
                assert resp.status == expected
                outcome = orjson.loads(await resp.read())
    assert [i["expression"] for i in outcome["issue"]] == [["Bundle.entry[0]"], ["Bundle.entry[1]"]]
    stored = await all_messages(engine)
    assert len(stored) == 2 and orjson.loads(stored[1][2])["id"] == "p9"


async def test_the_openapi_document_lists_the_endpoints(make_config: Any, engine_factory: Any) -> None:
    _, url = await start(make_config, engine_factory)
    async with aiohttp.ClientSession() as http, http.get(f"{url}/openapi.json") as resp:
        doc = await resp.json()
    assert set(doc["paths"]) == {"/hl7v2", "/fhir", "/fhir/{resourceType}"}


async def test_the_channel_shows_in_status_and_metrics_with_the_mllp_counters(
        make_config: Any, engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    async with aiohttp.ClientSession() as http:
        for body in (ADT.format(cid="S1").encode(), b"garbage"):
            async with http.post(f"{url}/hl7v2", data=body, headers=HL7) as resp:
                await resp.read()
    await engine.pipeline.drain()
    [channel] = engine.status()["channels"]
    assert channel["type"] == "http" and channel["state"] == "started"
    assert channel["listen"].startswith("127.0.0.1:")
    assert channel["counters"]["received"] == 1 and channel["counters"]["rejected"] == 1
    text = engine.metrics.render().decode()
    assert 'yonglink_messages_total{channel="web",outcome="received"} 1.0' in text
    assert 'yonglink_messages_total{channel="web",outcome="rejected"} 1.0' in text
    assert 'yonglink_ack_latency_seconds_count{channel="web"} 2.0' in text
    assert MessageState.REJECTED.value in {s[1] for s in await all_messages(engine)}


def make_certs(tmp: Path) -> Path:
    """A CA, a server cert for 127.0.0.1 and client certs `client` and `other`, via the openssl CLI."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=yonglink test CA")
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="ascii")
    for name in ("server", "client", "other"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "san.ext")
    return tmp


async def test_mutual_tls_admits_an_allowed_client_403s_another_and_refuses_no_certificate(
        make_config: Any, engine_factory: Any, tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    certs = make_certs(tmp_path / "certs")
    tls = (f'    http:\n      listen: "127.0.0.1:0"\n      auth: {{allowed_clients: [client]}}\n'
           f"      tls: {{cert: {certs}/server.pem, key: {certs}/server.key, ca: {certs}/ca.pem}}\n")
    engine: Engine = await engine_factory(make_config(CONFIG.format(extra="").replace(
        '    http:\n      listen: "127.0.0.1:0"\n      max_body_bytes: 64KiB\n', tls)))
    url = engine.channels["web"].inbound.describe()["url"]  # type: ignore[union-attr]
    assert url.startswith("https://")
    statuses = []
    for name in ("client", "other"):
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.load_cert_chain(str(certs / f"{name}.pem"), str(certs / f"{name}.key"))
        async with aiohttp.ClientSession() as http, http.post(
                f"{url}fhir", data=orjson.dumps(PATIENT), headers=FJSON, ssl=ctx) as resp:
            statuses.append(resp.status)
    assert statuses == [201, 403]
    anonymous = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    with pytest.raises(aiohttp.ClientError):
        async with aiohttp.ClientSession() as http, http.post(
                f"{url}fhir", data=orjson.dumps(PATIENT), headers=FJSON, ssl=anonymous) as resp:
            await resp.read()
    assert len(await all_messages(engine)) == 1


async def test_an_authenticated_expect_100_continue_request_is_told_to_continue_and_answered_aa(
        make_config: Any, engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YL_TEST_TOKEN", "secret-token")
    monkeypatch.setenv("YL_TEST_KEY", "secret-key")
    engine: Engine = await engine_factory(make_config(CONFIG.format(extra="").replace(
        '    http:\n      listen: "127.0.0.1:0"\n      max_body_bytes: 64KiB\n', AUTH)))
    port = engine.channels["web"].inbound.port  # type: ignore[union-attr]
    body = ADT.format(cid="X100").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                 b"Authorization: Bearer secret-token\r\n"
                 b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body))
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.write(body)
    await writer.drain()
    final = await asyncio.wait_for(reader.readuntil(b"MSA|AA|X100"), 10)
    writer.close()
    await writer.wait_closed()
    assert interim.startswith(b"HTTP/1.1 100 Continue") and final.startswith(b"HTTP/1.1 200")


async def test_a_store_failure_is_answered_503_with_ae_or_a_transient_outcome_never_positively(
        make_config: Any, engine_factory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.errors import StoreError

    engine, url = await start(make_config, engine_factory)

    def failing_write(op: Any, **_: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        fut.set_exception(StoreError("disk full (simulated)"))
        return fut

    monkeypatch.setattr(engine.store, "write", failing_write)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/hl7v2", data=ADT.format(cid="F1").encode(), headers=HL7) as resp:
            assert resp.status == 503 and resp.headers["Retry-After"]
            assert "\rMSA|AE|F1" in (await resp.read()).decode()
        async with http.post(f"{url}/fhir", data=orjson.dumps(PATIENT), headers=FJSON) as resp:
            assert resp.status == 503
            assert orjson.loads(await resp.read())["issue"][0]["code"] == "transient"


async def test_a_transaction_bundle_without_entries_is_a_400_on_bundle_entry(make_config: Any,
                                                                            engine_factory: Any) -> None:
    engine, url = await start(make_config, engine_factory)
    empty = {"resourceType": "Bundle", "type": "transaction"}
    async with aiohttp.ClientSession() as http, \
            http.post(f"{url}/fhir", data=orjson.dumps(empty), headers=FJSON) as resp:
        assert resp.status == 400
        outcome = orjson.loads(await resp.read())
    assert outcome["issue"][0]["expression"] == ["Bundle.entry"]
    assert [s[1] for s in await all_messages(engine)] == ["rejected"]
