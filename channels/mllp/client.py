"""An asyncio MLLP client: one persistent connection, send a frame and await its ACK, reconnect on demand.

Used by `yonglink send` and by the mllp destination. Replies are matched to requests in order (MLLP has
no correlation id; MSA-2 lets the caller check). When an ACK does not come within `timeout`, the
connection is dropped — a late ACK would otherwise be taken for the next message's — and
`TransientDeliveryError` is raised; the next `send` reconnects. Refused or reset connections raise
`TransientDeliveryError` too: whether to retry is the caller's policy.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import cast

from channels.mllp.framing import DEFAULT_MAX_FRAME_BYTES, Discarded, FrameDecoder, Oversize, encode_frame
from engine.errors import TransientDeliveryError

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for an ACK (and to connect)."""


class _ClientProtocol(asyncio.Protocol):
    """Feeds replies to the oldest waiting future."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.decoder = FrameDecoder(max_frame_bytes=max_frame_bytes)
        self.waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio ABC subclass

    def data_received(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            if isinstance(event, Discarded):
                continue
            fut = self.waiting.popleft() if self.waiting else None
            if fut is None or fut.done():
                continue
            if isinstance(event, Oversize):
                fut.set_exception(TransientDeliveryError(f"reply larger than {event.limit} bytes"))
            else:
                fut.set_result(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(TransientDeliveryError(
                    f"connection closed before the ACK arrived{f': {exc}' if exc else ''}"))


class MllpClient:
    """`async with MllpClient(host, port) as c: ack = await c.send(payload)`."""

    def __init__(self, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = DEFAULT_TIMEOUT, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 server_hostname: str | None = None) -> None:
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.timeout = timeout
        self.max_frame_bytes = max_frame_bytes
        self._proto: _ClientProtocol | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> MllpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._proto is not None and not self._proto.lost

    async def connect(self) -> None:
        """Open the connection if it is not open (called by `send`)."""
        if self.connected:
            return
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(loop.create_connection(
                lambda: _ClientProtocol(self.max_frame_bytes), self.host, self.port,
                ssl=self.ssl_context,
                server_hostname=(self.server_hostname or self.host) if self.ssl_context else None),
                self.timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransientDeliveryError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._proto = proto

    async def send(self, payload: bytes) -> bytes:
        """Send one message and return its ACK's payload (bytes between the MLLP blocks)."""
        return (await self.send_many([payload]))[0]

    async def send_many(self, payloads: list[bytes]) -> list[bytes]:
        """Pipeline several messages on the connection; return their ACKs in order."""
        async with self._lock:
            await self.connect()
            proto = self._proto
            if proto is None or proto.transport is None:
                raise TransientDeliveryError(f"not connected to {self.host}:{self.port}")
            loop = asyncio.get_running_loop()
            futures = [loop.create_future() for _ in payloads]
            proto.waiting.extend(futures)
            proto.transport.write(b"".join(encode_frame(p) for p in payloads))
            try:
                return list(await asyncio.wait_for(asyncio.gather(*futures), self.timeout))
            except TimeoutError:
                await self._drop()
                raise TransientDeliveryError(f"no ACK from {self.host}:{self.port} within "
                                             f"{self.timeout:g}s") from None
            except TransientDeliveryError:
                await self._drop()
                raise

    async def post(self, payload: bytes) -> None:
        """Send one message that asks for no ACK (MSH-15 NE): nothing is awaited."""
        async with self._lock:
            await self.connect()
            if self._proto is None or self._proto.transport is None:
                raise TransientDeliveryError(f"not connected to {self.host}:{self.port}")
            self._proto.transport.write(encode_frame(payload))

    async def close(self) -> None:
        await self._drop()

    async def _drop(self) -> None:
        proto, self._proto = self._proto, None
        if proto is not None and proto.transport is not None:
            proto.transport.close()
            for fut in proto.waiting:
                fut.cancel()
            proto.waiting.clear()
