"""The access audit: who read patient data or changed something through the admin API, when, from where.

Every read of raw content or a delivery payload (`GET /messages/{id}` and `GET /dlq/{id}` when the caller
may see them) and every replay, purge, reload and channel control is one row: time, actor (role and token
fingerprint, or `anonymous@address`), role, remote address (and the `X-Forwarded-For` chain), action,
target id and a short detail without patient data. The table is append-only: nothing in the engine
updates or deletes its rows, and retention (engine/store/messages.py `prune`) never touches it — an audit
that ages out would not answer "who looked at this patient's message last year".
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from engine.ids import new_id
from engine.store.connection import Connection
from engine.store.filters import Filters
from engine.store.sqlite import Store

# Table: access_audit (engine/store/migrations/0001_schema.*.sql).
MAX_PAGE = 1000
_COLUMNS = "id, at, actor, role, remote, action, target, detail"


class AuditAction(enum.StrEnum):
    """What was done."""

    READ_RAW = "read_raw"
    READ_PAYLOAD = "read_payload"
    REPLAY = "replay"
    PURGE = "purge"
    RELOAD = "reload"
    CONTROL = "control"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited access (no patient data: ids and short reasons only)."""

    actor: str
    role: str
    remote: str | None
    action: AuditAction
    target: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of `GET /audit` and `yonglink audit`; `before` pages backwards by id."""

    action: str | None = None
    actor: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None
    before: str | None = None
    limit: int = 100


def record(conn: Connection, entry: AuditEntry, *, now: float) -> str:
    audit_id = new_id(now)
    conn.execute(f"INSERT INTO access_audit ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                 (audit_id, now, entry.actor, entry.role, entry.remote, entry.action.value, entry.target,
                  entry.detail))
    return audit_id


def search(conn: Connection, q: AuditQuery) -> list[dict[str, Any]]:
    """Newest first."""
    f = Filters().equal(action=q.action, actor=q.actor, target=q.target)
    f.add("at >= ?", q.since).add("at < ?", q.until)
    sql, args = f.page(_COLUMNS, "access_audit", before=q.before, limit=q.limit, max_limit=MAX_PAGE)
    keys = [k.strip() for k in _COLUMNS.split(",")]
    return [dict(zip(keys, row, strict=True)) for row in conn.execute(sql, args).fetchall()]


class AccessAudit:
    """The audit as a service for the admin API: `record` commits durably before the response is sent."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, entry: AuditEntry) -> None:
        await self.store.write(partial(record, entry=entry, now=time.time()))

    async def search(self, query: AuditQuery) -> list[dict[str, Any]]:
        return await self.store.read(partial(search, q=query))
