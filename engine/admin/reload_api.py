"""Admin API routes for hot reload: `POST /reload` applies the config file again, `GET /reload` shows
the last attempt. `engine/admin/server.py` calls `add_routes(app, engine)`; the work is `EngineApi.reload`.

A refused reload answers 400 with every problem as `file:line` text in `errors`; the running config is
untouched. `POST /reload` needs the caller to be authorized (engine/admin/auth.py: the admin token when
one is configured).
"""

from __future__ import annotations

from aiohttp import web

from engine.admin import EngineApi
from engine.admin.audit_api import audit_entry
from engine.admin.auth import authorized
from engine.store.access_audit import AuditAction


def add_routes(app: web.Application, engine: EngineApi) -> None:
    """Register `POST /reload` and `GET /reload` on the admin application."""

    async def post_reload(request: web.Request) -> web.Response:
        if not authorized(request):
            raise web.HTTPForbidden(text="not authorized to reload the config")
        result = await engine.reload()
        await engine.audit.record(audit_entry(request, AuditAction.RELOAD,
                                              result.version or result.previous_version,
                                              "applied" if result.ok else "refused"))
        return web.json_response(result.to_dict(), status=200 if result.ok else 400)

    async def get_reload(request: web.Request) -> web.Response:
        last = engine.last_reload
        return web.json_response({"last": last.to_dict() if last else None,
                                  "config": {"file": str(engine.config.file),
                                             "version": engine.config.version,
                                             "loaded_at": engine.config.loaded_at}})

    app.router.add_post("/reload", post_reload)
    app.router.add_get("/reload", get_reload)
