"""MLLP destination: send HL7 v2 messages over a persistent TCP connection and check each ACK.

Framing is MLLP (HL7 v2.5.1 Appendix C.4.3: `<VT> message <FS><CR>`). One message is outstanding per
connection at a time (the MLLP convention), so `concurrency` above 1 only queues behind the client's
lock. The ACK must arrive within `ack_timeout` and its MSA-2 must equal the sent MSH-10 (HL7 v2.5.1 §2.9.2);
otherwise the connection is dropped (a late ACK must not be read as the next message's) and the
attempt is transient. MSA-1 (Table 0008): `AA`/`CA` success; `AR`/`CR` permanent; `AE`/`CE` transient by
default, `ae: permanent` to dead-letter them at once. A refused/broken connection is transient; the
next send reconnects, and the retry policy spaces the attempts.

Only HL7 v2 payloads are sent: use a pass-through route (`passthrough: true`). Building HL7 v2 from a
dataset record is not implemented; a JSON record fails permanently with that reason.
The connection, framing, ACK timeout and reconnects are channels/mllp/client.py's; `tls` (`ca_file`,
`cert_file`, `key_file`) wraps it in TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.base import Outbound
from channels.mllp.client import MllpClient
from channels.tls import client_context
from engine.config import parse_duration, parse_listen
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.types import DeliveryItem, DeliveryResult

DEFAULT_ACK_TIMEOUT = 30.0
"""Seconds to wait for the ACK (and to connect)."""

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
    """A persistent MLLP connection to `host:port` (or `address`), through channels/mllp/client.py."""

    def __init__(self, *, name: str, settings: Mapping[str, Any]) -> None:
        super().__init__(name=name, settings=settings)
        if settings.get("address"):
            self.host, self.port = parse_listen(str(settings["address"]), key="mllp.address")
        else:
            self.host, self.port = str(settings.get("host", "127.0.0.1")), int(settings.get("port", 2575))
        self.ack_timeout = parse_duration(settings.get("ack_timeout", DEFAULT_ACK_TIMEOUT))
        self.ae_permanent = settings.get("ae", "transient") == "permanent"
        context = client_context(settings.get("tls"), key=f"destinations.{name}.mllp.tls")
        self.client = MllpClient(self.host, self.port, timeout=self.ack_timeout, ssl_context=context)

    async def stop(self) -> None:
        await self.client.close()

    async def send(self, item: DeliveryItem) -> DeliveryResult:
        expected = control_id(item.payload)
        ack = await self.client.send(item.payload)  # raises TransientDeliveryError: no ACK, refused, broken
        code, ref, note = parse_ack(ack)
        if ref != expected:
            await self.client.close()  # the stream is out of step: start afresh
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
        await self.client.close()
        raise TransientDeliveryError(f"unrecognised ACK code {code!r}", response=summary)
