"""`tls:` means the same on every connector (channels/tls.py), checked with certificates made here: MLLP
and HTTP inbound (a client certificate from the right CA, none, from the wrong CA, expired), MLLP and HTTP
outbound (the receiver's certificate from the right CA, the wrong CA, expired; mutual TLS)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from certs import Pki, make_pki

from channels.http.outbound import HttpOutbound
from channels.mllp.client import MllpClient
from channels.mllp.framing import FrameDecoder, encode_frame
from channels.mllp.outbound import MllpOutbound
from engine.config import Config
from engine.errors import ConfigError, DeliveryError
from engine.runtime import Engine
from engine.types import HL7V2, DeliveryItem

Factory = Callable[[Config], Any]
ADT = (b"MSH|^~\\&|HIS|NBH|EMPI|NB|20261101120000||ADT^A04|{cid}|P|2.5.1\r"
       b"PID|1||P1^^^NBH^PI||X^Y||19900101|M\r")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def client_ctx(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def start(make_config: Callable[[str], Config], engine_factory: Factory, pki: Pki,
                extra: str = "") -> tuple[Engine, int, str]:
    tls = f"{{cert: {pki.server_cert}, key: {pki.server_key}, ca: {pki.ca}{extra}}}"
    engine: Engine = await engine_factory(make_config(f"""
engine:
  store: {{path: var/tls.db}}
  admin: {{listen: "127.0.0.1:0"}}
channels:
  - name: his
    type: mllp
    mllp: {{listen: "127.0.0.1:0", tls: {tls}}}
  - name: web
    type: http
    http: {{listen: "127.0.0.1:0", tls: {tls}}}
"""))
    mllp_port = int(str(engine.channels["his"].describe()["listen"]).rsplit(":", 1)[1])
    http_url = str(engine.channels["web"].describe()["url"]).rstrip("/")
    return engine, mllp_port, http_url


async def mllp_ok(port: int, ctx: ssl.SSLContext, cid: str) -> bool:
    """True when the message got AA over TLS; False when the TLS handshake or the connection failed."""
    try:
        async with MllpClient("127.0.0.1", port, ssl_context=ctx, timeout=5) as client:
            return b"MSA|AA|" in await client.send(ADT.replace(b"{cid}", cid.encode()))
    except (DeliveryError, ssl.SSLError, ConnectionError, OSError, asyncio.IncompleteReadError):
        return False


async def http_ok(url: str, ctx: ssl.SSLContext, cid: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"{url}/hl7v2", data=ADT.replace(b"{cid}", cid.encode()), ssl=ctx,
                headers={"Content-Type": HL7V2}) as resp:
            return resp.status == 200 and b"MSA|AA|" in await resp.read()
    except (aiohttp.ClientError, ssl.SSLError, OSError):
        return False


@pytest.mark.parametrize("protocol", ["mllp", "http"])
async def test_with_a_ca_a_client_certificate_is_required_and_verified(
        protocol: str, pki: Pki, make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    """`ca` given, `require_client_cert` not said: mutual TLS on both protocols (MLLP used to accept a
    client without a certificate here)."""
    _engine, port, url = await start(make_config, engine_factory, pki)

    async def ok(ctx: ssl.SSLContext, cid: str) -> bool:
        return await (mllp_ok(port, ctx, cid) if protocol == "mllp" else http_ok(url, ctx, cid))

    assert await ok(client_ctx(pki, pki.client_cert, pki.client_key), "T1")
    assert not await ok(client_ctx(pki), "T2")  # no client certificate
    assert not await ok(client_ctx(pki, pki.foreign_client_cert, pki.foreign_client_key), "T3")  # wrong CA
    assert not await ok(client_ctx(pki, pki.expired_client_cert, pki.expired_client_key), "T4")  # expired


@pytest.mark.parametrize("protocol", ["mllp", "http"])
async def test_require_client_cert_false_lets_a_client_come_without_one(
        protocol: str, pki: Pki, make_config: Callable[[str], Config], engine_factory: Factory) -> None:
    _engine, port, url = await start(make_config, engine_factory, pki, ", require_client_cert: false")
    ctx = client_ctx(pki)
    assert await (mllp_ok(port, ctx, "O1") if protocol == "mllp" else http_ok(url, ctx, "O1"))
    foreign = client_ctx(pki, pki.foreign_client_cert, pki.foreign_client_key)
    assert not await (mllp_ok(port, foreign, "O2") if protocol == "mllp" else http_ok(url, foreign, "O2"))


def test_require_client_cert_without_a_ca_is_a_config_error(pki: Pki) -> None:
    from channels.tls import server_context

    with pytest.raises(ConfigError, match="require_client_cert needs `ca`"):
        server_context({"cert": str(pki.server_cert), "key": str(pki.server_key),
                        "require_client_cert": True}, key="channels.x.mllp.tls")


# --- outbound ---------------------------------------------------------------------------------------


def server_ctx(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def mllp_receiver(ctx: ssl.SSLContext) -> tuple[asyncio.Server, int]:
    """A TLS MLLP receiver that answers every frame with AA."""
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for frame in decoder.feed(data):
                    if isinstance(frame, bytes):
                        cid = frame.split(b"\r", 1)[0].split(b"|")[9]
                        ack = b"MSH|^~\\&|R|R|S|S|20261101||ACK|A1|P|2.5.1\rMSA|AA|" + cid
                        writer.write(encode_frame(ack))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def http_receiver() -> AsyncIterator[Callable[[ssl.SSLContext], Any]]:
    runners: list[web.AppRunner] = []

    async def start_receiver(ctx: ssl.SSLContext) -> str:
        async def ok(request: web.Request) -> web.Response:
            await request.read()
            return web.json_response({"ok": True})
        app = web.Application()
        app.router.add_post("/records", ok)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        runners.append(runner)
        return f"https://127.0.0.1:{runner.addresses[0][1]}/records"

    yield start_receiver
    for runner in runners:
        await runner.cleanup()


def item() -> DeliveryItem:
    return DeliveryItem(delivery_id=f"d{time.monotonic_ns()}", message_id="m1", destination="out",
                        payload=ADT.replace(b"{cid}", b"OUT1"), content_type=HL7V2)


async def send_mllp(port: int, tls: dict[str, Any]) -> bool:
    out = MllpOutbound(name="out", settings={"address": f"127.0.0.1:{port}", "tls": tls, "ack_timeout": "5s"})
    try:
        await out.send(item())
        return True
    except DeliveryError:
        return False
    finally:
        await out.stop()


async def send_http(url: str, tls: dict[str, Any]) -> bool:
    out = HttpOutbound(name="out", settings={"url": url, "tls": tls})
    await out.start()
    try:
        await out.send(item())
        return True
    except DeliveryError:
        return False
    finally:
        await out.stop()


async def test_outbound_verifies_the_receivers_certificate(pki: Pki, http_receiver: Any) -> None:
    """Right CA: delivered; a CA that did not sign the receiver's certificate, or an expired certificate:
    not delivered (a delivery error, retried as transient)."""
    good, good_port = await mllp_receiver(server_ctx(pki.server_cert, pki.server_key))
    expired, expired_port = await mllp_receiver(server_ctx(pki.expired_server_cert, pki.expired_server_key))
    good_url = await http_receiver(server_ctx(pki.server_cert, pki.server_key))
    expired_url = await http_receiver(server_ctx(pki.expired_server_cert, pki.expired_server_key))
    try:
        assert await send_mllp(good_port, {"ca_file": str(pki.ca)})
        assert not await send_mllp(good_port, {"ca_file": str(pki.other_ca)})
        assert not await send_mllp(expired_port, {"ca_file": str(pki.ca)})
        assert await send_http(good_url, {"ca_file": str(pki.ca)})
        assert not await send_http(good_url, {"ca_file": str(pki.other_ca)})
        assert not await send_http(expired_url, {"ca_file": str(pki.ca)})
    finally:
        for server in (good, expired):
            server.close()


async def test_outbound_mutual_tls_presents_the_client_certificate(pki: Pki, http_receiver: Any) -> None:
    """A receiver that requires a client certificate takes the destination's `cert_file`/`key_file`, and
    refuses a destination without one."""
    ctx = server_ctx(pki.server_cert, pki.server_key, client_ca=pki.ca)
    server, port = await mllp_receiver(ctx)
    url = await http_receiver(ctx)
    mutual = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    try:
        assert await send_mllp(port, mutual)
        assert not await send_mllp(port, {"ca_file": str(pki.ca)})
        assert await send_http(url, mutual)
        assert not await send_http(url, {"ca_file": str(pki.ca)})
    finally:
        server.close()
