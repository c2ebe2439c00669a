"""Admin API (placeholder until the admin room lands: /healthz and /status only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from engine.runtime import Engine


class AdminServer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app = web.Application()
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/status", self.status)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.engine.status())

    async def start(self) -> None:
        cfg = self.engine.config.engine.admin
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{cfg.host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
