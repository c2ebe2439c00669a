"""The admin API (aiohttp): status, health, readiness, metrics, message search and channel control.

Routes (every response is JSON, errors included, except `/metrics`, which is Prometheus text):

- `GET /healthz` — the process is alive; never needs the token.
- `GET /readyz` — 503 while an enabled channel is not `started`, the store does not commit or is full;
  the body lists why (`EngineApi.readiness()`).
- `GET /status` — `EngineApi.status()`: engine, store, channels, destinations, data quality.
- `GET /metrics` — Prometheus text; state gauges are refreshed from `/status` at scrape time.
- `GET /messages`, `GET /messages/{id}` — engine/admin/messages_api.py.
- `POST /channels/{name}/start|stop|pause|resume` — `EngineApi.control`.
- `/dlq…` — engine/admin/dlq_api.py (delivery room); `/reload` — engine/admin/reload_api.py;
  `/quality/monthly` — engine/admin/quality_api.py (the monthly bulletin);
  `/`, `/console/…` and
  `/history`, `/history/traffic` — engine/admin/console.py (console room).

The handlers ask the engine through `EngineApi` (engine/admin/__init__.py) and its services; none runs SQL.
Authorization (bearer token, loopback rule, the flags other rooms read) is engine/admin/auth.py.
Access lines go through structlog: DEBUG for reads (the console polls every 2 s), INFO for actions.
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import PurePath
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from channels.http.limits import ConnectionCap, LimitedSite
from engine.admin import EngineApi, audit_api, console, dlq_api, messages_api, quality_api, reload_api
from engine.admin.audit_api import audit_entry
from engine.admin.auth import AccessPolicy, Handler, auth_middleware, authorized
from engine.admin.counter_history import History
from engine.admin.traffic_history import TrafficHistory
from engine.channel_runtime import CONTROL_ACTIONS
from engine.cluster import Singleton
from engine.config import AdminConfig
from engine.errors import StoreError
from engine.logs import mask_error
from engine.metrics import CONTENT_TYPE, Metrics
from engine.store.access_audit import AuditAction
from engine.types import ChannelState

METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
"""The engine's metrics, for the middleware that counts requests by status."""

DEFAULT_SHUTDOWN_TIMEOUT = 2.0
"""Seconds `stop()` waits for open admin connections (e.g. a console's event stream) before closing."""

log = structlog.get_logger("yonglink.admin")


def _default(obj: Any) -> Any:
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response serialised with orjson (several times faster than json for `/status`)."""
    return web.Response(body=orjson.dumps(data, default=_default, option=orjson.OPT_NON_STR_KEYS),
                        status=status, content_type="application/json", headers=headers)


def _error_text(exc: web.HTTPException) -> str:
    text = exc.text or ""
    return text if text and text != f"{exc.status}: {exc.reason}" else exc.reason


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into `{"error": "..."}` (no HTML pages) and count requests by status."""
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        keep = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        if exc.content_type == "application/json" and exc.body:
            response = web.Response(body=exc.body, status=exc.status, headers=keep,
                                    content_type="application/json")
        else:
            response = json_response({"error": _error_text(exc)}, status=exc.status, headers=keep)
    except StoreError as exc:
        log.error("admin request: store unavailable", path=request.path, error=str(exc))
        response = json_response({"error": f"store unavailable: {exc}"}, status=503)
    except Exception:
        log.exception("admin request failed", path=request.path)
        response = json_response({"error": "internal error (see the engine log)"}, status=500)
    metrics.admin_requests.labels(request.method, str(response.status)).inc()
    return response


def mask_last_errors(status: dict[str, Any]) -> dict[str, Any]:
    """Mask patient-data shapes in channel and destination error texts (a destination's error may quote
    its response, which may quote the record): `/status` is for everyone who holds the token."""
    for item in (*status.get("channels", ()), *status.get("destinations", ())):
        err = item.get("last_error")
        if isinstance(err, dict) and isinstance(err.get("text"), str):
            item["last_error"] = {**err, "text": mask_error(err["text"])}
        elif isinstance(err, str):
            item["last_error"] = mask_error(err)
    return status


class AccessLogger(AbstractAccessLogger):
    """aiohttp access lines through structlog (so they are JSON and redacted like everything else)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        fields = {"method": request.method, "path": request.path, "status": response.status,
                  "duration_ms": round(time * 1000, 2), "remote": request.remote}
        if request.method in ("GET", "HEAD", "OPTIONS"):
            log.debug("admin request", **fields)
        else:
            log.info("admin request", **fields)


class AdminServer:
    """Builds the application (this room's routes plus the DLQ and console rooms') and serves it."""

    def __init__(self, engine: EngineApi, *, settings: AdminConfig, metrics: Metrics) -> None:
        self.engine = engine
        self.config = settings
        self.cap = ConnectionCap(channel="admin", max_connections=settings.max_connections)
        self.metrics = metrics
        policy = AccessPolicy.of(token=settings.token, tokens=settings.tokens, listen_host=settings.host,
                                 allowed_hosts=settings.allowed_hosts, loopback_raw=settings.loopback_raw)
        self.app = web.Application(middlewares=[json_errors, auth_middleware(policy)])
        self.app[METRICS] = metrics
        token_configured = policy.token_required
        r = self.app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        r.add_get("/status", self.status)
        r.add_get("/metrics", self.prometheus)
        r.add_post("/channels/{name}/{action}", self.control)
        messages_api.add_routes(self.app, engine.messages, json_response, token_configured=token_configured,
                                audit=engine.audit)
        dlq_api.add_routes(self.app, engine.dead_letters, token_configured=token_configured,
                           audit=engine.audit)
        audit_api.add_routes(self.app, engine.audit)
        reload_api.add_routes(self.app, engine)
        quality_api.add_routes(self.app, engine.quality)
        history = History(channels=engine.channels, destinations=engine.delivery.status)
        traffic = TrafficHistory(channels=engine.channels, store=engine.store,
                                 dead_between=engine.dead_letters.count_between,
                                 rolls_up=functools.partial(engine.cluster.holds, Singleton.HISTORY))
        console.add_routes(self.app, history, traffic,  # `/`, `/console/…` (public: no data), `/history…`
                           token_configured=token_configured)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind `engine.admin.listen` (port 0 picks a free port; `.url` says which)."""
        self._runner = web.AppRunner(self.app, access_log_class=AccessLogger,
                                     access_log=logging.getLogger("yonglink.admin.access"),
                                     shutdown_timeout=DEFAULT_SHUTDOWN_TIMEOUT,
                                     keepalive_timeout=self.config.header_timeout)
        await self._runner.setup()
        # The same bounds as an HTTP channel (channels/http/limits.py): a connection cap, and aiohttp's
        # keepalive_timeout as the wait for a complete request.
        site = LimitedSite(self._runner, self.config.host, self.config.port, cap=self.cap)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- handlers ---------------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        reasons = await self.engine.readiness()
        if reasons:
            return json_response({"ready": False, "reasons": reasons, "error": "; ".join(reasons)},
                                 status=503)
        return json_response({"ready": True})

    async def status(self, request: web.Request) -> web.Response:
        return json_response(mask_last_errors(self.engine.status()))

    async def prometheus(self, request: web.Request) -> web.Response:
        m = self.metrics
        m.update_from_status(self.engine.status(), now=time.time())
        return web.Response(body=m.render(), headers={"Content-Type": CONTENT_TYPE})

    async def control(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in CONTROL_ACTIONS:
            raise web.HTTPNotFound(text=f"unknown action {action!r}: expected {', '.join(CONTROL_ACTIONS)}")
        if name not in self.engine.channels:
            raise web.HTTPNotFound(text=f"no channel {name!r}")
        if not authorized(request):
            raise web.HTTPForbidden(text="not authorized to control channels")
        await self.engine.audit.record(audit_entry(request, AuditAction.CONTROL, name, action))
        state = await self.engine.control(name, action)
        log.info("channel control", channel=name, action=action, state=state.value, remote=request.remote)
        channel = self.engine.channels[name].describe()
        if state is ChannelState.ERROR:
            return json_response({"error": f"channel {name} failed to {action}",
                                  "channel": channel}, status=500)
        return json_response({"channel": channel})
