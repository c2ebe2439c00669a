"""The ops console: static HTML/CSS/JS served by the admin API itself, plus `GET /history`.

The console is plain files under `engine/admin/static/` (package data; no build step, no CDN, nothing fetched
from anywhere but this engine). It reads the admin API (`/status`, `/history`, `/messages`, `/dlq`, ...)
from the browser. `engine/admin/server.py` calls `add_routes(app, history)`, which marks `/` and
`/console/...` public (engine/admin/auth.py: static files hold no data); `/history` is guarded like `/status`.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from engine.admin.auth import allow_anonymous
from engine.admin.counter_history import History
from engine.admin.traffic_history import RANGES, TrafficHistory

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""Where the console's files live (shipped as package data, see pyproject `package-data`)."""

STATIC_PREFIX = "/console/"
"""URL prefix of the console's files; `/` serves `index.html`."""

HISTORY_KEY = web.AppKey("yonglink_history", History)
"""The app's `History` sampler (started and stopped with the admin app)."""
TRAFFIC_KEY = web.AppKey("yonglink_traffic", TrafficHistory)
"""The app's received / failed / dead per minute history, kept in the store."""

_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml",
          ".json": "application/json"}


def add_routes(app: web.Application, history: History, traffic: TrafficHistory, *,
               token_configured: bool) -> None:
    """Serve the console at `/` and `/console/...`, the counters' live history at `GET /history` and
    the stored traffic charts at `GET /history/traffic?range=1h|24h|7d|30d` (both histories are
    started and stopped with the app)."""
    app[HISTORY_KEY] = history
    app[TRAFFIC_KEY] = traffic

    async def start_history(app: web.Application) -> None:
        history.start()
        await traffic.start()

    async def stop_history(app: web.Application) -> None:
        await history.stop()
        await traffic.stop()

    app.on_startup.append(start_history)
    app.on_cleanup.append(stop_history)
    async def console_info(request: web.Request) -> web.Response:
        """Public facts the console needs before the token: whether one is required (no data)."""
        return web.json_response({"token_required": token_configured},
                                 headers={"Cache-Control": "no-store"})

    allow_anonymous(app, "/", STATIC_PREFIX)  # static files and info.json hold no data
    app.router.add_get("/", index)
    app.router.add_get(STATIC_PREFIX + "info.json", console_info)
    app.router.add_get(STATIC_PREFIX + "{path:.*}", static_file)
    app.router.add_get("/history", history_handler)
    app.router.add_get("/history/traffic", traffic_handler)


async def index(request: web.Request) -> web.StreamResponse:
    return _file_response(STATIC_DIR / "index.html")


async def static_file(request: web.Request) -> web.StreamResponse:
    """A file under `STATIC_DIR`; anything resolving outside it (`..`, symlinks) is a 404."""
    rel = request.match_info["path"] or "index.html"
    target = (STATIC_DIR / rel).resolve()
    if not target.is_relative_to(STATIC_DIR) or not target.is_file():
        raise web.HTTPNotFound(text="no such console file")
    return _file_response(target)


async def history_handler(request: web.Request) -> web.Response:
    history = request.app[HISTORY_KEY]
    return web.json_response(history.snapshot())


async def traffic_handler(request: web.Request) -> web.Response:
    name = request.query.get("range", "1h")
    if name not in RANGES:
        raise web.HTTPBadRequest(text=f"range: expected one of {', '.join(RANGES)}")
    return web.json_response(await request.app[TRAFFIC_KEY].series(name))


def _file_response(path: Path) -> web.StreamResponse:
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return web.Response(body=path.read_bytes(), content_type=ctype,
                        charset="utf-8" if ctype.startswith("text/") or ctype.endswith("json") else None,
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
