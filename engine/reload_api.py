"""Admin API routes for hot reload: `POST /reload` applies the config file again, `GET /reload` shows
the last attempt. `engine/admin.py` calls `add_routes(app, engine)`.

A refused reload answers 400 with every problem as `file:line` text in `errors`; the running config is
untouched. When an admin token is configured, `POST /reload` needs it (the admin middleware sets
`request["authorized"]`; without that middleware the bearer header is checked here).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web

from engine import reload as hot

if TYPE_CHECKING:
    from engine.runtime import Engine


def add_routes(app: web.Application, engine: Engine) -> None:
    """Register `POST /reload` and `GET /reload` on the admin application."""

    async def post_reload(request: web.Request) -> web.Response:
        token = engine.config.engine.admin.token
        if token and not _authorized(request, token):
            raise web.HTTPUnauthorized(text="admin token required")
        result = await hot.reload(engine)
        return web.json_response(result.to_dict(), status=200 if result.ok else 400)

    async def get_reload(request: web.Request) -> web.Response:
        last = hot.last_result(engine)
        return web.json_response({"last": last.to_dict() if last else None,
                                  "config": {"file": str(engine.config.file),
                                             "version": engine.config.version,
                                             "loaded_at": engine.config.loaded_at}})

    app.router.add_post("/reload", post_reload)
    app.router.add_get("/reload", get_reload)


def _authorized(request: web.Request, token: str) -> bool:
    flag = request.get("authorized")
    if flag is not None:
        return bool(flag)
    header = request.headers.get("Authorization", "")
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
