"""MLLP destination: send HL7 v2 messages over a persistent TCP connection and check each ACK.

Framing is MLLP (HL7 v2.5.1 Appendix C.4.3: `<VT> message <FS><CR>`). One message is outstanding per
connection at a time (the MLLP convention), so `concurrency` above 1 only queues behind the lock. The
ACK must arrive within `ack_timeout` and its MSA-2 must equal the sent MSH-10 (HL7 v2.5.1 §2.9.2);
otherwise the connection is dropped (a late ACK must not be read as the next message's) and the
attempt is transient. MSA-1 (Table 0008): `AA`/`CA` success; `AR`/`CR` permanent; `AE`/`CE` transient by
default, `ae: permanent` to dead-letter them at once. A refused/broken connection is transient; the
next send reconnects, and the retry policy spaces the attempts.

Only HL7 v2 payloads are sent: use a pass-through route (`passthrough: true`). Building HL7 v2 from a
dataset record is not implemented; a JSON record fails permanently with that reason.
(This module has its own small client; switch to channels/mllp_client.py once it exists.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from channels.base import Outbound
from engine.config import parse_duration, parse_listen
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.types import DeliveryItem, DeliveryResult

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_ACK_TIMEOUT = 30.0
MAX_ACK_BYTES = 1 << 20

SUCCESS_CODES = frozenset({"AA", "CA"})
REJECT_CODES = frozenset({"AR", "CR"})
ERROR_CODES = frozenset({"AE", "CE"})


def control_id(message: bytes) -> str:
    """MSH-10 of an ER7 message (field separator from MSH-1, HL7 v2.5.1 §2.14.9.1)."""
    if not message.startswith(b"MSH") or len(message) < 8:
        raise PermanentDeliveryError("mllp destination: payload is not an HL7 v2 message (no MSH)")
    sep = message[3:4]
    first = message.replace(b"\n", b"\r").split(b"\r", 1)[0]
    fields = first.split(sep)
    if len(fields) < 10 or not fields[9]:
        raise PermanentDeliveryError("mllp destination: the message has no MSH-10 control id")
    return fields[9].decode("latin-1")


def parse_ack(ack: bytes) -> tuple[str, str, str]:
    """(MSA-1 code, MSA-2 control id, MSA-3/ERR text) from an ACK; ('', '', '') without MSA."""
    text = ack.decode("latin-1").replace("\n", "\r")
    sep = text[3] if text.startswith("MSH") and len(text) > 3 else "|"
    code, ref, note = "", "", ""
    for segment in text.split("\r"):
        fields = segment.split(sep)
        if fields[0] == "MSA":
            code = fields[1] if len(fields) > 1 else ""
            ref = fields[2] if len(fields) > 2 else ""
            note = fields[3] if len(fields) > 3 else ""
        elif fields[0] == "ERR" and not note:
            note = sep.join(fields[1:])[:200]
    return code.strip(), ref.strip(), note.strip()


class MllpOutbound(Outbound):
    """A persistent MLLP connection to `host:port` (or `address`)."""

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        if settings.get("address"):
            self.host, self.port = parse_listen(str(settings["address"]), key="mllp.address")
        else:
            self.host, self.port = str(settings.get("host", "127.0.0.1")), int(settings.get("port", 2575))
        self.connect_timeout = parse_duration(settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self.ack_timeout = parse_duration(settings.get("ack_timeout", DEFAULT_ACK_TIMEOUT))
        self.ae_permanent = settings.get("ae", "transient") == "permanent"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self.connects = 0

    async def stop(self) -> None:
        await self._close()

    async def _close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except (OSError, ConnectionError):
                pass

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None and not self._writer.is_closing():
            return self._reader, self._writer
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port, limit=MAX_ACK_BYTES), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise TransientDeliveryError(
                f"cannot connect to {self.host}:{self.port}: {type(exc).__name__}") from None
        self._reader, self._writer = reader, writer
        self.connects += 1
        return reader, writer

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        expected = control_id(item.payload)
        async with self._lock:
            reader, writer = await self._connect()
            try:
                writer.write(VT + item.payload + FS + CR)
                await writer.drain()
                ack = await asyncio.wait_for(reader.readuntil(FS + CR), self.ack_timeout)
            except TimeoutError:
                await self._close()
                raise TransientDeliveryError(f"no ACK within {self.ack_timeout:g}s") from None
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                await self._close()
                raise TransientDeliveryError(f"connection broken: {type(exc).__name__}") from None
        code, ref, note = parse_ack(ack.lstrip(VT)[:-2])
        if ref != expected:
            await self._close()
            raise TransientDeliveryError(f"ACK MSA-2 {ref!r} does not match sent MSH-10 {expected!r}")
        summary = f"MSA {code}" + (f": {note}" if note else "")
        if code in SUCCESS_CODES:
            return DeliveryResult(response=summary)
        if code in REJECT_CODES:
            raise PermanentDeliveryError(f"rejected by receiver ({summary})", response=summary)
        if code in ERROR_CODES:
            if self.ae_permanent:
                raise PermanentDeliveryError(f"receiver error ({summary})", response=summary)
            raise TransientDeliveryError(f"receiver error ({summary})", response=summary)
        await self._close()
        raise TransientDeliveryError(f"unrecognised ACK code {code!r}", response=summary)
