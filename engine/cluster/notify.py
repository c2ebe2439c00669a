"""Wake-ups between nodes on PostgreSQL: LISTEN/NOTIFY channels, their payloads, and the listen
connection (engine/cluster/postgres.py sends on its session connection; this module receives).

`yonglink_wake` carries a destination name (rows queued for a FIFO destination another node sends),
`yonglink_reload` a config version (every node re-reads its own config file). Each payload starts with
the sender's node id, so a node ignores its own. The listen connection reconnects with backoff; after
each (re)connect `on_connect` runs, because PostgreSQL does not replay what was sent while it was away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

WAKE_CHANNEL = "yonglink_wake"
RELOAD_CHANNEL = "yonglink_reload"
CONNECT_TIMEOUT = 5
"""Seconds a dedicated connection may take to open."""
LISTEN_BACKOFF_FIRST, LISTEN_BACKOFF_MAX = 0.2, 5.0
"""Seconds between two attempts to reopen the listen connection: doubling from the first to the cap."""

log = structlog.get_logger("yonglink.cluster")


def payload(sender: str, text: str) -> str:
    """What a node sends: its id, then the destination name or config version."""
    return f"{sender}|{text}"


def parse(raw: str) -> tuple[str, str]:
    """(sender node id, text) of a payload."""
    sender, _, text = raw.partition("|")
    return sender, text


class Listener:
    """Holds the listen connection of one node; `on_note(channel, sender, text)` for each notification."""

    def __init__(self, *, dsn: str, node_id: str, on_note: Callable[[str, str, str], None],
                 on_connect: Callable[[], None]) -> None:
        self.dsn = dsn
        self.node_id = node_id
        self.on_note = on_note
        self.on_connect = on_connect
        self.listening = asyncio.Event()
        """Set while the connection listens (tests wait for it before expecting a wake-up)."""
        self.stopping = False

    async def run(self) -> None:
        """Listen until cancelled (set `stopping` first), reconnecting after every loss.

        psycopg may turn the cancellation of a wait for notifications into an error of its own; the loop
        then ends on `stopping` or the task's pending cancellation rather than take it for a lost
        connection and listen on for ever."""
        import psycopg

        pause = LISTEN_BACKOFF_FIRST
        while not self.stopping:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                        application_name=f"yonglink-{self.node_id}-listen") as conn:
                    await conn.execute(f"LISTEN {WAKE_CHANNEL}")
                    await conn.execute(f"LISTEN {RELOAD_CHANNEL}")
                    self.listening.set()
                    pause = LISTEN_BACKOFF_FIRST
                    self.on_connect()
                    async for note in conn.notifies():
                        sender, text = parse(note.payload)
                        if sender != self.node_id:
                            self.on_note(note.channel, sender, text)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.stopping or cancelling():
                    raise asyncio.CancelledError from exc
                log.warning("cluster listen connection lost; reconnecting", error=str(exc))
            finally:
                self.listening.clear()
            await asyncio.sleep(pause)
            pause = min(pause * 2, LISTEN_BACKOFF_MAX)


def cancelling() -> bool:
    """True when the running task has a cancellation pending (asyncio.Task.cancelling, Python 3.11)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
