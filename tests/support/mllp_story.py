"""Helpers for MLLP user-story tests: start an engine with one MLLP channel, read ACKs, query the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from channels.mllp.inbound import MllpInbound
from engine.config import Config
from engine.hl7v2.encoding import DEFAULT_ENCODING, unescape
from engine.runtime import Engine


async def start_mllp(make_config: Callable[[str], Config], engine_factory: Callable[[Config], Any],
                     mllp: str = "", store: str = "") -> tuple[Engine, int]:
    """Start an engine with one MLLP channel `lab` on 127.0.0.1:0; return it and the bound port."""
    config = make_config(f"""
        engine:
          store: {{path: var/e.db{store}}}
          admin: {{enabled: false}}
        channels:
          - name: lab
            type: mllp
            mllp: {{listen: "127.0.0.1:0"{mllp}}}
        """)
    started: Engine = await engine_factory(config)
    inbound = started.channels["lab"].inbound
    if not isinstance(inbound, MllpInbound):
        raise RuntimeError(f"the lab channel did not start: {started.channels['lab'].stats.last_error}")
    return started, inbound.port_bound


def segments(ack: bytes, codec: str = "utf-8") -> dict[str, list[str]]:
    """An ACK's segments by name (first of each), split on `|` and unescaped."""
    out: dict[str, list[str]] = {}
    for line in ack.decode(codec, errors="replace").split("\r"):
        if line:
            out.setdefault(line[:3], [unescape(f, DEFAULT_ENCODING) for f in line.split("|")])
    return out


def all_segments(ack: bytes) -> list[list[str]]:
    """Every segment of an ACK, split on `|` (not unescaped)."""
    return [line.split("|") for line in ack.decode("utf-8", errors="replace").split("\r") if line]


async def rows(engine: Engine, columns: str = "control_id, state, error") -> list[tuple[Any, ...]]:
    """`columns` of every stored message, oldest first."""

    def query(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return conn.execute(f"SELECT {columns} FROM messages ORDER BY seq").fetchall()

    return await engine.store.read(query)
