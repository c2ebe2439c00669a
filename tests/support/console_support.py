"""Helpers for the console's browser tests: HL7 v2 test messages, an MLLP sender, polling with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


def hl7(control_id: str, message_type: str = "ADT^A01", facility: str = "NBH001") -> bytes:
    """A minimal HL7 v2.5.1 message (MSH + PID; HL7 v2.5.1 §2.14.9 MSH fields 4, 9, 10), test data only."""
    return (f"MSH|^~\\&|HIS|{facility}|YL|YL|20240101120000||{message_type}|{control_id}|P|2.5.1\r"
            f"PID|1||{control_id}^^^^PI||DOE^JOHN||19800101|M\r").encode()


async def send_mllp(listen: str, payloads: list[bytes]) -> list[bytes]:
    """Send each payload framed 0x0B … 0x1C 0x0D on one connection; return the ACKs."""
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    acks = []
    for payload in payloads:
        writer.write(b"\x0b" + payload + b"\x1c\x0d")
        await writer.drain()
        acks.append(await asyncio.wait_for(reader.readuntil(b"\x1c\x0d"), 10))
    writer.close()
    await writer.wait_closed()
    return acks


async def wait_for(cond: Callable[[], Any], timeout: float = 15.0) -> Any:  # noqa: ASYNC109
    """Poll until `cond()` is truthy; a deadline, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    return value
