"""MLLP inbound channel: an HL7 v2 listener over TCP (optionally TLS / mutual TLS).

Config (`channels[].mllp`, schema `schemas/config/channel-mllp.schema.json`)::

    listen: "0.0.0.0:2575"        # port 0 picks a free port; describe() shows the actual one
    charset: null                 # override MSH-18 (Table 0211 name or Python codec)
    ack: on_receipt               # or after_processing (see channels/mllp/handler.py)
    max_frame_bytes: 1MiB         # oversize frame: AR, then the connection is closed
    idle_timeout: 300s            # no bytes for this long: close
    read_timeout: 30s             # a started frame not finished within this: close
    processing_timeout: 30s       # ack: after_processing waits at most this long
    max_connections: 256          # connections beyond this are refused (closed at once, logged <= 1/10 s)
    framing: strict               # or lenient: <FS> alone ends a frame, <VT> optional (framing.py)
    tls: {cert: server.pem, key: server.key, ca: clients-ca.pem, require_client_cert: true}

Framing is in `channels/mllp/framing.py`, one connection in `channels/mllp/connection.py`, and what
each frame is answered in `channels/mllp/handler.py`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from channels.base import ChannelContext, Inbound
from channels.mllp.connection import MllpConnection
from channels.mllp.framing import DEFAULT_MAX_FRAME_BYTES
from channels.mllp.handler import MllpHandler
from channels.tls import server_context
from engine.config import parse_duration, parse_listen, parse_size
from engine.errors import ConfigError
from engine.log_throttle import LogThrottle

DEFAULT_IDLE_TIMEOUT = 300.0
"""Seconds a connection may stay silent before it is closed."""
DEFAULT_READ_TIMEOUT = 30.0
"""Seconds a frame may take from its start block to its end block."""
DEFAULT_PROCESSING_TIMEOUT = 30.0
"""Seconds `ack: after_processing` waits for the pipeline before answering AA "processing continues"."""
DEFAULT_MAX_CONNECTIONS = 256
"""Concurrent connections per channel; more are refused."""
STOP_GRACE = 5.0
"""Seconds `stop()` waits for commits in flight before closing connections."""

log = structlog.get_logger("yonglink.mllp")


class MllpInbound(Inbound):
    """Listens for MLLP connections; every frame is committed before it is acknowledged."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name=name, settings=settings, context=context)
        key = f"channels.{name}.mllp"
        self.host, self.port = parse_listen(str(settings["listen"]), key=f"{key}.listen")
        self.max_frame_bytes = parse_size(settings.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES),
                                          key=f"{key}.max_frame_bytes")
        self.idle_timeout = parse_duration(settings.get("idle_timeout", DEFAULT_IDLE_TIMEOUT),
                                           key=f"{key}.idle_timeout")
        self.read_timeout = parse_duration(settings.get("read_timeout", DEFAULT_READ_TIMEOUT),
                                           key=f"{key}.read_timeout")
        self.max_connections = int(settings.get("max_connections", DEFAULT_MAX_CONNECTIONS))
        framing = str(settings.get("framing", "strict"))
        if framing not in ("strict", "lenient"):
            raise ConfigError(f"framing must be strict or lenient, not {framing!r}", key=f"{key}.framing")
        self.lenient_framing = framing == "lenient"
        self.throttle = LogThrottle()  # refusals and discarded bytes: one line per interval per channel
        self.refused = 0
        self.ack_mode = str(settings.get("ack", "on_receipt"))
        processing_timeout = parse_duration(settings.get("processing_timeout", DEFAULT_PROCESSING_TIMEOUT),
                                            key=f"{key}.processing_timeout")
        self.handler = MllpHandler(context=context, charset=settings.get("charset"),
                                   after_processing=self.ack_mode == "after_processing",
                                   processing_timeout=processing_timeout)
        self.tls = settings.get("tls")
        self.connections: set[MllpConnection] = set()
        self._server: asyncio.Server | None = None
        self.observe_ack: Callable[[float], None] = context.observe_ack
        self._base = context.config_dir

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: MllpConnection(self), self.host, self.port, ssl=self._ssl_context(),
            reuse_address=True, backlog=1024)
        log.info("mllp listening", channel=self.name, listen=self.describe()["listen"],
                 tls=bool(self.tls))

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        busy = [asyncio.ensure_future(c.drained()) for c in self.connections if c.in_flight]
        if busy:  # commits in flight finish, and their ACKs are written, before the connections close
            await asyncio.wait(busy, timeout=STOP_GRACE)
            for waiter in busy:
                waiter.cancel()
        for conn in list(self.connections):
            conn.close()
        await self._server.wait_closed()
        self._server = None

    def describe(self) -> dict[str, Any]:
        listen = f"{self.host}:{self.port}"
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return {"listen": listen, "tls": bool(self.tls), "ack": self.ack_mode,
                "max_connections": self.max_connections, "connections_refused": self.refused,
                "framing": "lenient" if self.lenient_framing else "strict"}

    @property
    def port_bound(self) -> int:
        """The actual listening port (useful with `listen: host:0`)."""
        return int(self.describe()["listen"].rsplit(":", 1)[1])

    # --- connections (called by MllpConnection) ----------------------------------------------------

    def admit(self, conn: MllpConnection) -> bool:
        """Count a new connection, or refuse it beyond `max_connections`."""
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            return False
        self.connections.add(conn)
        self._count()
        return True

    def release(self, conn: MllpConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._count()

    def _count(self) -> None:
        self.context.stats.connections_open = len(self.connections)

    def _ssl_context(self) -> ssl.SSLContext | None:
        """TLS from `tls: {cert, key, ca, require_client_cert}`, read as every connector reads it
        (channels/tls.py)."""
        return server_context(self.tls, key=f"channels.{self.name}.mllp.tls", resolve=self._path)

    def _path(self, value: str) -> str:
        path = Path(value)
        return str(path if path.is_absolute() else self._base / path)

