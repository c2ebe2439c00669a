"""Bounds on what one HTTP peer can hold: a connection cap, and the refusal it gets beyond it.

aiohttp has no connection limit of its own (`TCPSite` takes none, and `RequestHandler` accepts every
connection it is given), and 300 half-sent requests were enough to starve MLLP and the admin API on the
same process. `LimitedSite` is a `TCPSite` whose protocol factory wraps each aiohttp `RequestHandler`
in `_Limited`, which counts live connections when they are made (after the TLS handshake, so a failed
handshake never leaks a count) and answers the ones beyond `max_connections` with a bare
`503 Service Unavailable` + `Retry-After` before closing them, without ever handing them to aiohttp.
Refusals are logged at most once per interval (engine/log_throttle.py), with the number suppressed.

The header timeout is aiohttp's own `keepalive_timeout` (a `RequestHandler` waiting for a request,
complete headers or not, is closed when it expires; see `HttpInbound.start`), the body timeout is
`HttpInbound._read_body`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import structlog
from aiohttp import web

from engine.log_throttle import LogThrottle

DEFAULT_MAX_CONNECTIONS = 256
"""Concurrent HTTP connections per channel; more get 503 and are closed."""
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\n"
           b"Content-Type: text/plain\r\nContent-Length: 28\r\n\r\ntoo many connections, retry\n")
"""What a connection beyond the cap receives (RFC 9110 §15.6.4), before it is closed."""

log = structlog.get_logger("yonglink.http")


class ConnectionCap:
    """Live connection count of one channel, and the decision for a new one."""

    def __init__(self, *, channel: str, max_connections: int, throttle: LogThrottle | None = None) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.channel = channel
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self.throttle = throttle or LogThrottle()

    def admit(self, peer: object) -> bool:
        if self.open >= self.max_connections:
            self.refused += 1
            ok, suppressed = self.throttle.allow("refused")
            if ok:
                log.warning("connection refused: max_connections reached", channel=self.channel,
                            peer=_peer(peer), max_connections=self.max_connections, suppressed=suppressed)
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


class _Limited(asyncio.Protocol):
    """Forwards every protocol call to aiohttp's handler, once the connection is admitted."""

    __slots__ = ("_admitted", "_cap", "_inner")

    def __init__(self, inner: asyncio.Protocol, cap: ConnectionCap) -> None:
        self._inner = inner
        self._cap = cap
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._cap.admit(transport.get_extra_info("peername")):
            stream = cast(asyncio.Transport, transport)
            stream.write(REFUSAL)
            stream.close()
            return
        self._admitted = True
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._admitted:
            self._admitted = False
            self._cap.release()
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._admitted else None

    def pause_writing(self) -> None:
        if self._admitted:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self._inner.resume_writing()


class LimitedSite(web.TCPSite):
    """`web.TCPSite` with a connection cap (see the module docstring)."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, cap: ConnectionCap,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self.cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner (what TCPSite.start does first)
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        factory: Callable[[], asyncio.Protocol] = lambda: _Limited(server(), self.cap)  # noqa: E731
        listening = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._server = listening
        self._bound_port = int(listening.sockets[0].getsockname()[1]) if listening.sockets else self._port


def _peer(peer: object) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
