"""The admin API on a real loopback socket: status, health, readiness, metrics, control, token, messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from channels.mllp.client import MllpClient
from engine.config import Config
from engine.runtime import Engine
from engine.types import InboundMessage

pytestmark = pytest.mark.both_backends

Factory = Callable[[Config], Any]
TOKEN = "s3cret-admin-token"

STOPPED_CHANNEL = """
engine:
  store: {path: var/admin.db}
  admin: {listen: "127.0.0.1:0"%s}
channels:
  - name: lab
    type: mllp
    enabled: false
    mllp: {listen: "127.0.0.1:0"}
"""

LIVE_CHANNEL = """
engine:
  store: {path: var/admin.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: his-adt
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
"""

ADT = ("MSH|^~\\&|HIS|NBH|YONGLINK|NB|20240101120000||ADT^A01^ADT_A01|{cid}|P|2.5.1\r"
       "PID|1||P001^^^NBH^PI||张三^^^^^^L||19900101|M\r")


def config_text(token: str | None = None) -> str:
    return STOPPED_CHANNEL % (f", token: {token}" if token else "")


async def start(make_config: Callable[[str], Config], engine_factory: Factory, text: str) -> Engine:
    engine: Engine = await engine_factory(make_config(text))
    return engine


async def accept(engine: Engine, control_id: str, *, channel: str = "lab", facility: str = "NBH",
                 received_at: float | None = None) -> str:
    rt = engine.channels[channel]
    msg = InboundMessage(channel=channel, raw=ADT.format(cid=control_id).encode(),
                         content_type="x-application/hl7-v2+er7",
                         received_at=received_at if received_at is not None else time.time(),
                         peer="127.0.0.1:5000", charset="UNICODE UTF-8", sending_application="HIS",
                         sending_facility=facility, control_id=control_id, message_type="ADT^A01",
                         dedupe_key=f"{facility}|{control_id}")
    acc = await rt.accept(msg)
    await rt.wait_processed(acc.message_id, timeout=5)
    return acc.message_id


async def get(url: str, *, token: str | None = None, headers: dict[str, str] | None = None,
              params: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.get(url, headers=hdrs, params=params) as r:
        body = await (r.json() if r.content_type == "application/json" else r.text())
        return r.status, body, r


async def post(url: str, *, token: str | None = None) -> tuple[int, Any]:
    hdrs = {"Authorization": f"Bearer {token}"} if token else {"X-Requested-With": "test"}
    async with aiohttp.ClientSession() as s, s.post(url, headers=hdrs) as r:
        return r.status, await r.json()


# --- status, health, metrics ---------------------------------------------------------------------


async def test_status_reports_engine_store_and_each_channel(
        make_config: Callable[[str], Config], engine_factory: Factory, store_backend: str) -> None:
    engine = await start(make_config, engine_factory, config_text())
    await accept(engine, "S1")
    code, body, resp = await get(engine.admin.url + "/status")
    assert code == 200 and resp.content_type == "application/json"
    assert body["engine"]["version"] and body["engine"]["uptime_seconds"] >= 0
    store = body["store"]
    assert store["type"] == store_backend and store["size_bytes"] > 0
    assert store["path"].endswith("admin.db") if store_backend == "sqlite" else store["database"]
    (lab,) = body["channels"]
    assert lab["name"] == "lab" and lab["type"] == "mllp" and lab["state"] == "stopped"
    assert set(lab["counters"]) >= {"received", "rejected", "duplicate", "filtered", "mapped", "failed"}
    assert lab["counters"]["received"] == 1 and lab["connections_open"] == 0 and lab["last_error"] is None
    assert isinstance(body["destinations"], list)


async def test_healthz_needs_no_token_but_everything_else_does(make_config: Callable[[str], Config],
                                                               engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, config_text(TOKEN))
    url = engine.admin.url
    assert (await get(url + "/healthz"))[0] == 200
    for path in ("/status", "/readyz", "/metrics", "/messages", "/dlq", "/nowhere"):
        code, body, resp = await get(url + path)
        assert code == 401, path
        assert body == {"error": "admin token required"}
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    code, body, resp = await get(url + "/status", token="wrong")
    assert code == 401 and body == {"error": "invalid admin token"}
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert (await get(url + "/status", token=TOKEN))[0] == 200
    assert (await post(url + "/channels/lab/start"))[0] == 401
    code, _, resp = await get(url + "/")  # the console's static files hold no data
    assert code == 200 and resp.content_type == "text/html"
    assert (await get(url + "/history"))[0] == 401 and (await get(url + "/reload"))[0] == 401


async def test_errors_are_json_not_html(make_config: Callable[[str], Config],
                                        engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, config_text())
    code, body, resp = await get(engine.admin.url + "/no/such/page")
    assert code == 404 and resp.content_type == "application/json" and body == {"error": "Not Found"}
    code, body = await post(engine.admin.url + "/channels/nope/stop")
    assert code == 404 and body == {"error": "no channel 'nope'"}
    code, body = await post(engine.admin.url + "/channels/lab/explode")
    assert code == 404 and "unknown action" in body["error"]
    code, body, _ = await get(engine.admin.url + "/messages?since=yesterday")
    assert code == 400 and body["error"].startswith("since:")


async def test_metrics_count_messages_by_channel_and_outcome(make_config: Callable[[str], Config],
                                                             engine_factory: Factory) -> None:
    """Two messages over MLLP, one of them a retry: counted by outcome, each ACK's latency observed."""
    engine = await start(make_config, engine_factory, LIVE_CHANNEL)
    host, port = engine.channels["his-adt"].describe()["listen"].rsplit(":", 1)
    async with MllpClient(host, int(port)) as client:
        for cid in ("M1", "M1", "M2"):
            assert b"MSA|AA|" + cid.encode() in await client.send(ADT.format(cid=cid).encode())
    code, text, resp = await get(engine.admin.url + "/metrics")
    assert code == 200 and resp.content_type == "text/plain"
    assert 'yonglink_messages_total{channel="his-adt",outcome="received"} 2.0' in text
    assert 'yonglink_messages_total{channel="his-adt",outcome="duplicate"} 1.0' in text
    assert 'yonglink_ack_latency_seconds_count{channel="his-adt"} 3.0' in text
    assert 'yonglink_channel_state{channel="his-adt",state="started"} 1.0' in text
    assert "yonglink_store_size_bytes" in text and "# TYPE yonglink_queue_depth gauge" in text


# --- readiness and control (needs a channel that really listens) ---------------------------------


async def test_readyz_is_503_while_an_enabled_channel_is_stopped_and_200_once_started(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, LIVE_CHANNEL)
    url = engine.admin.url
    assert (await get(url + "/readyz"))[:2] == (200, {"ready": True})
    code, body = await post(url + "/channels/his-adt/stop")
    assert code == 200 and body["channel"]["state"] == "stopped"
    code, body, _ = await get(url + "/readyz")
    assert code == 503 and body["ready"] is False and body["reasons"] == ["channel his-adt is stopped"]
    code, body = await post(url + "/channels/his-adt/start")
    assert code == 200 and body["channel"]["state"] == "started"
    assert (await get(url + "/readyz"))[0] == 200


async def test_pause_and_resume_change_the_channel_state_shown_in_status(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, LIVE_CHANNEL)
    url = engine.admin.url
    assert (await post(url + "/channels/his-adt/pause"))[1]["channel"]["state"] == "paused"
    assert (await get(url + "/status"))[1]["channels"][0]["state"] == "paused"
    assert (await get(url + "/readyz"))[0] == 503
    assert (await post(url + "/channels/his-adt/resume"))[1]["channel"]["state"] == "started"


# --- message search ------------------------------------------------------------------------------


async def test_messages_are_found_by_channel_control_id_state_facility_and_time(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, config_text())
    t0 = float(int(time.time()))
    ids = [await accept(engine, f"Q{i}", facility="NBH" if i < 3 else "NB2", received_at=t0 + i)
           for i in range(5)]
    url = engine.admin.url + "/messages"
    _, body, _ = await get(url + "?channel=lab")
    assert [m["id"] for m in body["items"]] == ids[::-1] and body["next_before"] is None
    _, body, _ = await get(url + "?control_id=Q2")
    assert [m["id"] for m in body["items"]] == [ids[2]]
    _, body, _ = await get(url + "?facility=NB2")
    assert [m["id"] for m in body["items"]] == [ids[4], ids[3]]
    state = body["items"][0]["state"]
    _, body, _ = await get(url + f"?state={state}&message_type=ADT%5EA01")
    assert len(body["items"]) == 5
    since = datetime.fromtimestamp(t0 + 1, tz=UTC).isoformat()
    _, body, _ = await get(url, params={"since": since, "until": str(t0 + 3)})
    assert [m["id"] for m in body["items"]] == [ids[2], ids[1]]
    assert "raw" not in body["items"][0]


async def test_message_search_pages_backwards_with_the_before_cursor(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, config_text())
    ids = [await accept(engine, f"P{i}") for i in range(5)]
    url = engine.admin.url + "/messages?limit=2"
    seen: list[str] = []
    cursor = ""
    for _ in range(4):
        _, body, _ = await get(url + (f"&before={cursor}" if cursor else ""))
        seen += [m["id"] for m in body["items"]]
        cursor = body["next_before"]
        if cursor is None:
            break
    assert seen == ids[::-1]


async def test_message_detail_shows_raw_and_records_only_with_the_token(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, config_text(TOKEN))
    message_id = await accept(engine, "R1")
    url = f"{engine.admin.url}/messages/{message_id}"
    code, body, _ = await get(url)
    assert code == 401
    code, body, _ = await get(url, token=TOKEN)
    assert code == 200 and body["id"] == message_id and body["control_id"] == "R1"
    assert "张三" in body["raw"] and isinstance(body["results"], list)
    assert "deliveries" in body
    assert (await get(f"{engine.admin.url}/messages/NOPE", token=TOKEN))[:2] == (
        404, {"error": "no message NOPE"})


async def test_without_a_token_raw_content_is_shown_to_nobody_unless_the_config_says_loopback_may_see_it(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    """No token and no `loopback_raw`: even a loopback client sees metadata only (#17: raw content without a
    token only when the config says so explicitly)."""
    engine = await start(make_config, engine_factory, config_text())
    message_id = await accept(engine, "L0")
    _, body, _ = await get(f"{engine.admin.url}/messages/{message_id}")
    assert body["raw"] is None and "loopback_raw" in body["raw_hidden"]
    assert all(r["record"] is None for r in body["results"])


async def test_with_loopback_raw_raw_content_is_shown_to_loopback_clients_only(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, STOPPED_CHANNEL % ", loopback_raw: true")
    message_id = await accept(engine, "L1")
    url = f"{engine.admin.url}/messages/{message_id}"
    _, body, _ = await get(url)
    assert "张三" in body["raw"]
    _, body, _ = await get(url, headers={"X-Forwarded-For": "10.1.2.3"})
    assert body["raw"] is None and all(r["record"] is None for r in body["results"])


async def test_the_server_stops_even_while_a_client_keeps_a_connection_open(
        make_config: Callable[[str], Config]) -> None:
    engine = Engine(make_config(config_text()))
    await engine.start()
    host, port = engine.admin.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await engine.stop()
    writer.close()
    with pytest.raises((ConnectionError, OSError)):
        await asyncio.open_connection(host, int(port))


async def test_readyz_is_503_when_the_store_no_longer_commits(make_config: Callable[[str], Config],
                                                              engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, LIVE_CHANNEL)
    await engine.store.close()  # the writer is gone: nothing can commit any more
    code, body, _ = await get(engine.admin.url + "/readyz")
    assert code == 503 and body["reasons"] == ["store is not writable"]


async def test_status_masks_patient_data_quoted_in_a_last_error(make_config: Callable[[str], Config],
                                                                engine_factory: Factory) -> None:
    engine = await start(make_config, engine_factory, config_text())
    engine.channels["lab"].error("destination said: PID|1||330203199001011234^^^CHN||张三")
    _, body, _ = await get(engine.admin.url + "/status")
    text = body["channels"][0]["last_error"]["text"]
    assert text.startswith("destination said:") and "330203199001011234" not in text and "张三" not in text
