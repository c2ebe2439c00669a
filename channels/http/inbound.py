"""HTTP inbound channel (aiohttp): HL7 v2 and FHIR posts, answered only after the durable commit.

Endpoints under the channel's `base_path`:

- `POST {base}/hl7v2` — one HL7 v2 message or a batch (`x-application/hl7-v2+er7` or `text/plain`;
  charset from the header, else the channel's `charset`, else MSH-18, else UTF-8). HTTP 200 with the
  HL7 ACK(s) in the body: AA after commit, AR + ERR for unparseable input (stored as `rejected`), AE
  with HTTP 503 when the store failed. A batch is answered with one ACK per message, in order.
- `POST {base}/fhir`, `POST {base}/fhir/{resourceType}` — FHIR JSON or XML, a resource or a Bundle.
  201 (200 for an idempotent retry) with an OperationOutcome whose informational issues carry the
  stored message ids; 400 with one issue per invalid element path (payload stored as `rejected`).
- `GET {base}/openapi.json` — the OpenAPI document of the above.

Credentials are checked, and `Content-Length` compared with `max_body_bytes`, before the body is
read (also in the `Expect: 100-continue` handler, so a refused client never sends it); the limit is
enforced again while reading for chunked bodies.

Hostile peers are bounded (channels/http/limits.py): at most `max_connections` connections (default
256; more get 503 and are closed, logged at most once per 10 s), a request's headers must be complete
within `header_timeout` of the connection opening or of the previous response (default 30 s; also the
keep-alive idle limit), and its body within `body_timeout` of the handler starting to read it (default
60 s; then 408 and the connection is closed, nothing is stored: nothing was received whole).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from channels.base import ChannelContext, Inbound
from channels.http.auth import Authenticator
from channels.http.limits import DEFAULT_MAX_CONNECTIONS, ConnectionCap, LimitedSite
from channels.http.responses import Issue, openapi, operation_outcome
from channels.payload import FHIR_MEDIA_TYPES, Envelope, Hl7Item, fhir_messages, hl7v2_items, media_type
from channels.tls import relative_to, server_context
from engine.config import parse_duration, parse_listen, parse_size
from engine.errors import FhirParseError, StoreError
from engine.hl7v2.ack import SUCCESS_CODES, AckWriter, build_ack
from engine.hl7v2.charset import printable_label, python_codec
from engine.ids import new_id
from engine.types import FHIR_XML_TYPES, HL7V2, HL7V2_TYPES, Acceptance, InboundMessage

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
"""10 MiB: far above any real HL7 v2 message or FHIR Bundle a hospital posts in one go."""
READ_CHUNK = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 30.0
"""Seconds a connection has to send a request's complete headers (from opening or the last response)."""
DEFAULT_BODY_TIMEOUT = 60.0
"""Seconds a request has to send its whole body once the handler reads it."""
RETRY_AFTER_SECONDS = "5"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpInbound(Inbound):
    """An aiohttp server for one channel; `describe()` shows where it listens."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name=name, settings=settings, context=context)
        self.host, self.port = parse_listen(settings.get("listen", DEFAULT_LISTEN))
        self.base = "/" + str(settings.get("base_path", "/")).strip("/")
        self.base = "" if self.base == "/" else self.base
        self.max_body = parse_size(settings.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES))
        self.charset: str | None = settings.get("charset")
        self.release: str = settings.get("fhir_release", "R4B")
        self.split_bundles: bool = settings.get("split_bundles", True)
        self.auth = Authenticator(settings.get("auth") or {}, channel=name)
        key = f"channels.{name}.http"
        self.header_timeout = parse_duration(settings.get("header_timeout", DEFAULT_HEADER_TIMEOUT),
                                             key=f"{key}.header_timeout")
        self.body_timeout = parse_duration(settings.get("body_timeout", DEFAULT_BODY_TIMEOUT),
                                           key=f"{key}.body_timeout")
        cap = int(settings.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        self.cap = ConnectionCap(channel=name, max_connections=cap)
        self._tls = settings.get("tls")
        self._runner: web.AppRunner | None = None
        self.acks = AckWriter(new_id()[-10:] + "-")  # MSH-10 of our ACKs: unique, within 20 characters
        self._observe: Callable[[float], None] = context.observe_ack
        self._throttle = self.cap.throttle

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        self.auth.load()
        app = web.Application(client_max_size=self.max_body + 1)
        for path, handler in ((f"{self.base}/hl7v2", self._hl7v2), (f"{self.base}/fhir", self._fhir),
                              (f"{self.base}/fhir/{{resource_type}}", self._fhir)):
            app.router.add_post(path, self._guarded(handler), expect_handler=self._expect)
        app.router.add_get(f"{self.base}/openapi.json", self._openapi)
        # keepalive_timeout is aiohttp's wait for a request (complete headers) on an open connection:
        # our header timeout. A handler in progress is not affected by it.
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               keepalive_timeout=self.header_timeout)
        await runner.setup()
        ssl_context = server_context(self._tls, key=f"channels.{self.name}.http.tls",
                                     resolve=relative_to(self.context.config_dir))
        site = LimitedSite(runner, self.host, self.port, cap=self.cap, ssl_context=ssl_context,
                           reuse_address=True, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        self.port = int(bound[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # stops listening, lets handlers in flight finish
            self._runner = None

    def describe(self) -> dict[str, Any]:
        scheme = "https" if self._tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {"listen": f"{host}:{self.port}", "url": f"{scheme}://{host}:{self.port}{self.base}/",
                "auth": self.auth.required or bool(self.auth.allowed_clients),
                "max_connections": self.cap.max_connections, "connections_refused": self.cap.refused}

    # --- guards -----------------------------------------------------------------------------------

    def _denied(self, request: web.Request) -> web.Response | None:
        refused = self.auth.check(request)
        if refused is not None:
            status, reason = refused
            return web.Response(status=status, text=reason + "\n",
                                headers=self.auth.challenge() if status == 401 else None)
        length = request.content_length
        if length is not None and length > self.max_body:
            return _too_large(self.max_body)
        return None

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse before the client sends the body, else let it continue."""
        denied = self._denied(request)
        if denied is not None:
            denied.force_close()
            return denied
        if request.headers.get("Expect", "").lower() != "100-continue":
            return web.Response(status=417, text="only Expect: 100-continue is supported\n")
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            denied = self._denied(request)
            if denied is not None:
                denied.force_close()  # the body stays unread
                return denied
            stats = self.context.stats
            stats.connections_open += 1  # requests in flight (HTTP keeps no session to count)
            try:
                return await handler(request)
            finally:
                stats.connections_open -= 1
        return guarded

    async def _read_body(self, request: web.Request) -> bytes | web.Response:
        """The body, or the refusal: 413 once it exceeds `max_body_bytes` (chunked bodies have no
        length), 408 when it is not complete within `body_timeout` (a slow-body peer holds nothing)."""
        buf = bytearray()
        whole = request.content_length is not None and not request.headers.get("Content-Encoding")
        if whole and request.content.is_eof():
            # Every Content-Length byte is already buffered (a small post arrives with its headers):
            # reading cannot wait for the peer, so no body timer is armed and cancelled for it.
            return await request.read()
        try:
            async with asyncio.timeout(self.body_timeout):
                if whole:
                    # At most Content-Length bytes (already checked against max_body_bytes), in one call.
                    return await request.read()
                async for chunk in request.content.iter_chunked(READ_CHUNK):
                    buf += chunk
                    if len(buf) > self.max_body:
                        return _too_large(self.max_body)
        except TimeoutError:
            ok, suppressed = self._throttle.allow("body_timeout")
            if ok:
                self.context.log.warning("request body timeout: 408, connection closed",
                                         peer=request.remote, bytes=len(buf),
                                         body_timeout=self.body_timeout, suppressed=suppressed)
            resp = web.Response(status=408, text=f"body not received within {self.body_timeout:g} s\n")
            resp.force_close()
            return resp
        return bytes(buf)

    def _envelope(self, request: web.Request) -> Envelope:
        key = request.headers.get("Idempotency-Key", "").strip()
        return Envelope(channel=self.name, received_at=time.time(), peer=request.remote,
                        key=f"{self.name}:idem:{key}" if key else None)

    # --- HL7 v2 -----------------------------------------------------------------------------------

    async def _hl7v2(self, request: web.Request) -> web.StreamResponse:
        kind, charset = media_type(request.headers.get("Content-Type"))
        if kind not in HL7V2_TYPES:
            return _unsupported(kind, sorted(HL7V2_TYPES))
        raw = await self._read_body(request)
        if isinstance(raw, web.Response):
            return raw
        started = time.perf_counter()
        env = self._envelope(request)
        if charset:
            refused = await self._bad_charset(raw, env, charset)
            if refused is not None:
                return refused
        items = hl7v2_items(raw, env, charset=charset or self.charset)
        status, code, text, error_code, location = await self._commit_hl7(items)
        first = items[0]
        if code in SUCCESS_CODES and first.header is not None:  # AA/CA: the writer's fast path
            ack = self.acks.positive(first.header, code, text)
        else:
            ack = build_ack(first.header, code, text, control_id=self.acks.next_control_id(),
                            error_code=error_code, location=location)
        body = ack.encode(first.codec, errors="replace")
        self._observe(time.perf_counter() - started)
        # The header as aiohttp would write it from content_type= and charset=, without its parsing.
        headers = {"Content-Type": f"{HL7V2}; charset={first.codec}"}
        if status == 503:
            headers["Retry-After"] = RETRY_AFTER_SECONDS
        return web.Response(status=status, body=body, headers=headers)

    async def _bad_charset(self, raw: bytes, env: Envelope, charset: str) -> web.Response | None:
        """415 for a `Content-Type` charset that is not an accepted text encoding; the body is stored
        `rejected` (None: the charset is fine)."""
        try:
            python_codec(charset)
            return None
        except LookupError:
            pass
        reason = f"charset {printable_label(charset)} in Content-Type is not a text encoding yonglink accepts"
        rejected = InboundMessage(channel=self.name, raw=raw, content_type=HL7V2,
                                  received_at=env.received_at, peer=env.peer)
        try:
            await self.context.reject(rejected, reason)
        except StoreError as exc:
            self.context.error(f"could not store rejected input: {exc}")
        return web.Response(status=415, text=reason + "\n")

    async def _commit_hl7(self, items: list[Hl7Item]) -> tuple[int, str, str, str | None, str | None]:
        """Commit and choose the ACK as MLLP does: AA/AR, or CA/CR when MSH-15 asks for enhanced mode
        (HL7 v2.5.1 §2.9.3); a batch gets one ACK for the first message, "batch of N messages accepted".
        Returns (HTTP status, MSA-1, text, ERR-3 code, ERR-2 location)."""
        first = items[0]
        enhanced = first.header is not None and bool(first.header.accept_ack_type)
        if first.error is not None:
            try:
                await self.context.reject(first.inbound, first.error.reason)
            except StoreError as exc:  # still AR: the input is unacceptable whatever the store says
                self.context.error(f"could not store rejected input: {exc}")
            return (200, "CR" if enhanced else "AR", first.error.reason, first.error.code,
                    first.error.location)
        failed: list[BaseException] = []
        if len(items) == 1:  # the common case: no gather, so no task per request
            try:
                await self.context.accept(first.inbound)
            except Exception as exc:
                failed.append(exc)
        else:
            results = await asyncio.gather(*(self.context.accept(i.inbound) for i in items),
                                           return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            self.context.error(f"store failed, answered AE / 503: {failed[0]}")
            if not all(isinstance(f, StoreError) for f in failed):
                raise failed[0]
            return 503, "CE" if enhanced else "AE", "message not stored, retry later", "207", None
        text = f"batch of {len(items)} messages accepted" if len(items) > 1 else ""
        return 200, "CA" if enhanced else "AA", text, None, None

    # --- FHIR -------------------------------------------------------------------------------------

    async def _fhir(self, request: web.Request) -> web.StreamResponse:
        kind, _ = media_type(request.headers.get("Content-Type"))
        xml = kind in FHIR_XML_TYPES
        if kind not in FHIR_MEDIA_TYPES:
            body, ctype = operation_outcome([("error", "not-supported", f"content type {kind!r} is not "
                                              "application/fhir+json or application/fhir+xml", None)])
            return web.Response(status=415, body=body, headers={"Content-Type": ctype})
        raw = await self._read_body(request)
        if isinstance(raw, web.Response):
            return raw
        started = time.perf_counter()
        env = self._envelope(request)
        try:
            try:
                msgs = fhir_messages(raw, env, content_type=kind, release=self.release,
                                     expected_type=request.match_info.get("resource_type"),
                                     split=self.split_bundles)
            except FhirParseError as exc:
                rejected = InboundMessage(channel=self.name, raw=raw, content_type=kind,
                                          received_at=env.received_at, peer=env.peer)
                mid = await self.context.reject(rejected, exc.reason)
                issues: list[Issue] = [("error", "invalid" if path else "structure", text, path or None)
                                       for path, text in exc.issues or [("", exc.reason)]]
                issues.append(("information", "informational", f"stored as rejected message {mid}", None))
                return self._outcome(400, issues, xml, started)
            accepted: list[Acceptance] = await asyncio.gather(*(self.context.accept(m) for m in msgs))
        except StoreError as exc:
            self.context.error(f"store failed: {exc}")
            resp = self._outcome(503, [("error", "transient", "message not stored, retry later", None)],
                                 xml, started)
            resp.headers["Retry-After"] = RETRY_AFTER_SECONDS
            return resp
        issues = []
        for msg, acc in zip(msgs, accepted, strict=True):
            what = "already stored as message" if acc.duplicate else "stored as message"
            entry = msg.metadata.get("bundle_entry")
            where = f"Bundle.entry[{entry}]" if entry is not None else None
            issues.append(("information", "informational", f"{what} {acc.message_id}", where))
        status = 200 if all(a.duplicate for a in accepted) else 201
        return self._outcome(status, issues, xml, started)

    def _outcome(self, status: int, issues: list[Issue], xml: bool, started: float) -> web.Response:
        body, ctype = operation_outcome(issues, xml=xml)
        self._observe(time.perf_counter() - started)
        return web.Response(status=status, body=body, headers={"Content-Type": ctype})

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(openapi(self.base, auth=self.auth.required, max_body_bytes=self.max_body,
                                         api_key_header=self.auth.api_key_header))


def _too_large(limit: int) -> web.Response:
    resp = web.Response(status=413, text=f"body larger than {limit} bytes\n")
    resp.force_close()
    return resp


def _unsupported(kind: str, allowed: list[str]) -> web.Response:
    return web.Response(status=415, text=f"content type {kind!r} is not one of {', '.join(allowed)}\n")
