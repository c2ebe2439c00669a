"""What happened to a message: the message, each route's result and each delivery with its attempts.

The read side of `GET /messages` and `GET /messages/{id}` (engine/admin/messages_api.py). It lives in
the delivery room because a message's trail ends in its deliveries (engine/delivery/outbox.py); the
message rows themselves are the store's (engine/store/messages.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from engine.delivery import outbox
from engine.errors import PayloadCipherError
from engine.store import messages
from engine.store.connection import Connection
from engine.store.messages import MessageQuery
from engine.store.sqlite import Store
from engine.types import StoredMessage


@dataclass(frozen=True, slots=True)
class Trail:
    """One message, its route results and its deliveries (each with its `attempt_log`)."""

    message: StoredMessage
    results: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    raw_error: PayloadCipherError | None = None
    """Why the raw bytes, asked for, could not be decrypted (`message.raw` is then None)."""


class MessageTrail:
    """Message search and the path of one message, read from the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def search(self, query: MessageQuery) -> list[StoredMessage]:
        """Messages matching `query`, newest first, without raw bytes."""
        return await self.store.read(partial(messages.search, q=query))

    async def delivery_states(self, message_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each listed message's deliveries: destination, state, attempts, next attempt."""
        return await self.store.read(partial(outbox.delivery_states, message_ids=message_ids))

    async def trail(self, message_id: str, *, with_raw: bool) -> Trail | None:
        """The message (raw bytes only `with_raw`) with its results and deliveries; None if unknown."""

        cipher = self.store.cipher

        def load(conn: Connection) -> Trail | None:
            msg = messages.get(conn, message_id, with_raw=with_raw)
            if msg is None:
                return None
            raw_error = None
            if msg.raw is not None:
                try:
                    msg = replace(msg, raw=cipher.unseal(msg.raw))
                except PayloadCipherError as exc:
                    msg, raw_error = replace(msg, raw=None), exc
            return Trail(message=msg, results=messages.results_of(conn, message_id, cipher=cipher),
                         deliveries=outbox.deliveries_of(conn, message_id), raw_error=raw_error)

        return await self.store.read(load)
