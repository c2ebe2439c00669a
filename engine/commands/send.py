"""`yonglink send --host H --port P FILE...`: send HL7 v2 files over MLLP and print each ACK.

One message per file, or a batch (FHS/BHS envelope) or several MSH in one file: each message is sent in
its own frame, on one connection, in order. LF and CRLF line ends are converted to CR (HL7 v2.5.1
§2.5.1). Prints one line per message — file, control id (MSH-10), MSA-1, MSA-3 — and exits 1 if any
message did not get AA/CA (or got no ACK), 2 if the receiver could not be reached. A message whose
MSH-15 is NE asked for no ACK: it is sent and reported as `NE`.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import sys
from pathlib import Path
from typing import Any

from channels.mllp.client import DEFAULT_TIMEOUT, MllpClient
from engine.errors import Hl7ParseError, RejectedMessage, TransientDeliveryError
from engine.hl7v2.ack import SUCCESS_CODES, parse_ack
from engine.hl7v2.batch import split_batch
from engine.hl7v2.charset import decode, python_codec, sniff_charset
from engine.hl7v2.er7 import Er7Message


def register(sub: Any) -> None:
    p = sub.add_parser("send", help="send HL7 v2 files over MLLP and print the ACKs")
    p.add_argument("files", nargs="+", metavar="FILE", help="HL7 v2 file (one message, a batch, or several)")
    p.add_argument("--host", default="127.0.0.1", help="receiver host (default 127.0.0.1)")
    p.add_argument("--port", "-p", type=int, default=2575, help="receiver port (default 2575)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for each ACK (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca", help="CA file to verify the receiver's certificate (implies --tls)")
    p.add_argument("--cert", help="client certificate for mutual TLS (implies --tls)")
    p.add_argument("--key", help="client certificate's private key")
    p.set_defaults(func=run)


def messages_of(raw: bytes) -> tuple[list[bytes], str]:
    """The messages of one file as bytes (CR segment ends, envelope dropped) and its MSH-18 codec."""
    raw = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    label = sniff_charset(raw)
    codec = python_codec(label) if label else "utf-8"
    text = decode(raw, label).strip("\r\n\t ")
    return [part.encode(codec) for part in split_batch(text + "\r")], codec


def _ssl_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls or args.ca or args.cert):
        return None
    ctx = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    return ctx


def _load(name: str) -> tuple[list[bytes], str]:
    """Read and split one file; an unreadable file is reported as an ERROR line (no messages)."""
    try:
        return messages_of(Path(name).read_bytes())
    except RejectedMessage as exc:
        print(f"{name}\t-\tERROR\t{exc.reason}")
        return [], ""
    except (OSError, LookupError) as exc:
        print(f"{name}\t-\tERROR\t{exc}")
        return [], ""


async def _send(args: argparse.Namespace, files: list[tuple[str, list[bytes], str]]) -> int:
    failed = sum(1 for _, payloads, _ in files if not payloads)
    client = MllpClient(args.host, args.port, ssl_context=_ssl_context(args), timeout=args.timeout)
    try:
        for name, payloads, codec in files:
            for payload in payloads:
                control_id, mode = _header(payload, codec)
                if mode == "NE":
                    await client.post(payload)
                    print(f"{name}\t{control_id}\tNE\tno ACK requested (MSH-15 NE)")
                    continue
                try:
                    ack = await client.send(payload)
                    code, _, text = parse_ack(ack.decode(codec, errors="replace"))
                except TransientDeliveryError as exc:
                    if not client.connected and "cannot connect" in str(exc):
                        print(f"yonglink send: {exc}", file=sys.stderr)
                        return 2
                    code, text = "NO-ACK", str(exc)
                except Hl7ParseError as exc:
                    code, text = "BAD-ACK", exc.reason
                print(f"{name}\t{control_id}\t{code}\t{text}")
                failed += code not in SUCCESS_CODES
    finally:
        await client.close()
    return 1 if failed else 0


def _header(payload: bytes, codec: str) -> tuple[str, str]:
    """MSH-10 and MSH-15 of a message to send ("-" when the message does not even parse)."""
    try:
        msg = Er7Message.parse(payload.decode(codec, errors="replace"))
    except Hl7ParseError:
        return "-", ""
    return msg.control_id or "-", msg.accept_ack_type.upper()


def run(args: argparse.Namespace) -> int:
    files = [(name, *_load(name)) for name in args.files]
    return asyncio.run(_send(args, files))
