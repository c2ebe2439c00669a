"""Admin API security (#17), against a running engine on loopback: roles from tokens, the access audit,
the Host check against DNS rebinding, the CSRF check without a token, and error texts masked for
non-admins."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from engine import cli
from engine.admin.auth import fingerprint
from engine.config import Config
from engine.runtime import Engine
from engine.store import messages
from engine.types import InboundMessage

pytestmark = pytest.mark.both_backends

Factory = Callable[[Config], Any]
VIEWER, OPERATOR, ADMIN = "view-t0k", "oper-t0k", "admin-t0k"
ROLES_CONFIG = f"""
engine:
  store: {{path: var/sec.db}}
  admin:
    listen: "127.0.0.1:0"
    tokens: {{viewer: {VIEWER}, operator: {OPERATOR}, admin: {ADMIN}}}
    allowed_hosts: [yonglink.hospital.example]
channels:
  - name: lab
    type: mllp
    mllp: {{listen: "127.0.0.1:0"}}
routes: [{{path}}]
"""
NO_TOKEN_CONFIG = """
engine:
  store: {path: var/sec.db}
  admin: {listen: "127.0.0.1:0"}
channels:
  - name: lab
    type: mllp
    mllp: {listen: "127.0.0.1:0"}
"""
PERSON_ROUTE = Path(__file__).resolve().parents[3] / "mappings" / "adt_person.yaml"
BAD_DOB = ("MSH|^~\\&|HIS|NBH|EMPI|NB|20261101120000||ADT^A04|{cid}|P|2.5.1\r"
           "PID|1||P1^^^NBH^PI||张^三||19851345|M\r")


async def call(engine: Engine, method: str, path: str, *, token: str | None = None,
               headers: dict[str, str] | None = None, data: Any = None) -> tuple[int, Any]:
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.request(method, engine.admin.url + path, headers=hdrs,
                                                            data=data) as resp:
        body = await (resp.json() if resp.content_type == "application/json" else resp.text())
        return resp.status, body


async def accept(engine: Engine, cid: str) -> str:
    rt = engine.channels["lab"]
    acc = await rt.accept(InboundMessage(channel="lab", raw=BAD_DOB.format(cid=cid).encode(),
                                         content_type="x-application/hl7-v2+er7", received_at=time.time(),
                                         sending_facility="NBH", control_id=cid, message_type="ADT^A04"))
    await rt.wait_processed(acc.message_id, timeout=5)
    return acc.message_id


@pytest.fixture
async def roles_engine(make_config: Callable[[str], Config], engine_factory: Factory) -> Engine:
    engine: Engine = await engine_factory(make_config(ROLES_CONFIG.replace("{path}", str(PERSON_ROUTE))))
    return engine


async def test_each_role_sees_and_does_only_what_it_may(roles_engine: Engine) -> None:
    """viewer: metadata with masked errors, no actions; operator: control and reload, no raw, no purge;
    admin: raw content and the audit. No token at all: 401."""
    engine = roles_engine
    message_id = await accept(engine, "R1")
    assert (await call(engine, "GET", "/status"))[0] == 401
    assert (await call(engine, "GET", "/status", token="wrong"))[0] == 401

    code, body = await call(engine, "GET", f"/messages/{message_id}", token=VIEWER)
    assert code == 200 and body["raw"] is None and body["results"][0]["record"] is None
    assert "19851345" not in body["results"][0]["error"] and "birth_date" in body["results"][0]["error"]
    assert (await call(engine, "POST", "/channels/lab/pause", token=VIEWER))[0] == 403
    assert (await call(engine, "POST", "/reload", token=VIEWER))[0] == 403
    assert (await call(engine, "GET", "/audit", token=VIEWER))[0] == 403

    assert (await call(engine, "POST", "/channels/lab/pause", token=OPERATOR))[0] == 200
    assert (await call(engine, "POST", "/channels/lab/resume", token=OPERATOR))[0] == 200
    assert (await call(engine, "POST", "/reload", token=OPERATOR))[0] == 200
    code, body = await call(engine, "GET", f"/messages/{message_id}", token=OPERATOR)
    assert body["raw"] is None
    assert (await call(engine, "GET", "/audit", token=OPERATOR))[0] == 403

    code, body = await call(engine, "GET", f"/messages/{message_id}", token=ADMIN)
    assert code == 200 and "19851345" in body["raw"] and "19851345" in body["results"][0]["error"]
    assert (await call(engine, "GET", "/audit", token=ADMIN))[0] == 200


async def test_raw_reads_and_actions_are_audited_and_never_pruned(roles_engine: Engine) -> None:
    """Who (role and token fingerprint, never the token), when, from where, what; retention keeps them."""
    engine = roles_engine
    message_id = await accept(engine, "A1")
    await call(engine, "GET", f"/messages/{message_id}", token=ADMIN)
    await call(engine, "GET", f"/messages/{message_id}", token=VIEWER)  # no raw shown: not a raw read
    await call(engine, "POST", "/channels/lab/pause", token=OPERATOR)
    await call(engine, "POST", "/reload", token=OPERATOR)
    await engine.store.write(lambda c: messages.prune(c, older_than=time.time() + 86400 * 365))
    code, body = await call(engine, "GET", "/audit", token=ADMIN)
    assert code == 200
    rows = [(i["action"], i["actor"], i["role"], i["target"]) for i in reversed(body["items"])]
    assert rows[0] == ("read_raw", f"admin:{fingerprint(ADMIN)}", "admin", message_id)
    assert rows[1] == ("control", f"operator:{fingerprint(OPERATOR)}", "operator", "lab")
    assert rows[2][:3] == ("reload", f"operator:{fingerprint(OPERATOR)}", "operator")
    assert len(rows) == 3 and all(i["remote"] == "127.0.0.1" for i in body["items"])
    assert ADMIN not in str(body) and OPERATOR not in str(body)
    # the CLI shows the same
    code = await asyncio.to_thread(cli.main, ["audit", "--url", engine.admin.url, "--token", ADMIN,
                                              "--action", "read_raw", "--json"])
    assert code == 0


async def test_an_unknown_host_header_is_refused_against_dns_rebinding(roles_engine: Engine) -> None:
    engine = roles_engine
    port = engine.admin.url.rsplit(":", 1)[1]
    ok = {"Authorization": f"Bearer {ADMIN}"}
    rebound = {**ok, "Host": f"attacker.example:{port}"}
    assert (await call(engine, "GET", "/status", headers=rebound))[0] == 421
    assert (await call(engine, "GET", "/status", headers={**ok, "Host": f"localhost:{port}"}))[0] == 200
    assert (await call(engine, "GET", "/status", headers={**ok, "Host": f"127.0.0.1:{port}"}))[0] == 200
    assert (await call(engine, "GET", "/status",
                       headers={**ok, "Host": "yonglink.hospital.example"}))[0] == 200


async def test_without_a_token_a_cross_site_form_post_cannot_stop_a_channel(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    """A form POST (`application/x-www-form-urlencoded`, what a page on another site can send without a
    preflight) is refused; the same request from a script that adds X-Requested-With goes through."""
    engine: Engine = await engine_factory(make_config(NO_TOKEN_CONFIG))
    code, body = await call(engine, "POST", "/channels/lab/stop", data={"x": "1"})
    assert code == 403 and "cross-site" in body["error"]
    assert engine.channels["lab"].describe()["state"] == "started"
    code, _ = await call(engine, "POST", "/channels/lab/stop", headers={"X-Requested-With": "script"})
    assert code == 200 and engine.channels["lab"].describe()["state"] == "stopped"


async def test_without_a_token_remote_clients_may_only_look(
        make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    """A client relayed by a proxy (not loopback) is a viewer: it may read status but not act."""
    engine: Engine = await engine_factory(make_config(NO_TOKEN_CONFIG))
    relayed = {"X-Forwarded-For": "10.20.30.40", "X-Requested-With": "script"}
    assert (await call(engine, "GET", "/status", headers=relayed))[0] == 200
    assert (await call(engine, "POST", "/channels/lab/stop", headers=relayed))[0] == 403
