"""Key rotation on a live store: re-seal stored content with the keyring's current key, in batches.

`yonglink store rekey` (engine/commands/store.py) runs this beside a running engine. Each batch is one
read (a reader thread), the re-sealing on the event loop, and one short write transaction whose UPDATE
only replaces a value that is still the one read (a row the engine pruned or re-queued meanwhile is left
alone), so the engine's writer waits at most one batch. Rows sealed with a previous key and rows written
before encryption was turned on are both re-sealed; a row whose key is not in the keyring cannot be, and
is counted (with its key id) instead. `census` counts the rows per key id (`yonglink store keys`).

The SQL is the portable subset (`substr` works on SQLite BLOBs and PostgreSQL bytea alike).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from engine.errors import PayloadCipherError
from engine.store.cipher import HEADER_BYTES, MAGIC, TEXT_PREFIX, Keyring, sealed_key_id
from engine.store.connection import Connection, Dialect, dialect_of
from engine.store.sqlite import Store

DEFAULT_BATCH = 500
"""Rows re-sealed per write transaction (measured: ~15 ms of writer time for 1.5 KB messages)."""


@dataclass(frozen=True, slots=True)
class Column:
    """A column of sealed content: its table, the key that pages through it, and whether it is TEXT."""

    table: str
    column: str
    key: tuple[str, ...]
    text: bool = False


COLUMNS = (
    Column("messages", "raw", ("seq",)),
    Column("deliveries", "payload", ("seq",)),
    Column("results", "record", ("message_id", "route_id"), text=True),
    Column("export_records", "payload", ("seq",)),
)
"""Every column the store seals (engine/store/cipher.py); `export_records` exists only with an export
destination."""

PLAINTEXT = "plaintext"
"""The `census` entry for values written before encryption was turned on."""


@dataclass(slots=True)
class RekeyReport:
    """Per column: rows re-sealed, and rows that could not be (by key id)."""

    resealed: dict[str, int] = field(default_factory=dict)
    unreadable: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"resealed": self.resealed, "unreadable": self.unreadable}


def _prefix(keyring: Keyring, col: Column) -> Any:
    """How a value sealed with the current key starts (bytes, or text for a TEXT column)."""
    header = MAGIC + bytes([1]) + bytes.fromhex(keyring.current_id or "")
    if col.text:  # 9 header bytes are exactly 12 base64 characters: the prefix is fixed
        return TEXT_PREFIX + base64.b64encode(header).decode("ascii")
    return header


def _exists(conn: Connection, table: str) -> bool:
    if dialect_of(conn) is Dialect.POSTGRES:
        return conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()"
                            " AND table_name = ?", (table,)).fetchone() is not None
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None


def _page(conn: Connection, col: Column, prefix: Any, after: tuple[Any, ...] | None,
          limit: int) -> list[tuple[Any, ...]]:
    """The next `limit` rows whose value is not sealed with the current key: (key..., value)."""
    keys = ", ".join(col.key)
    where = f"{col.column} IS NOT NULL AND substr({col.column}, 1, {len(prefix)}) != ?"
    params: list[Any] = [prefix]
    if after is not None:
        where += f" AND ({keys}) > ({', '.join('?' * len(col.key))})"
        params += after
    return [tuple(r) for r in conn.execute(
        f"SELECT {keys}, {col.column} FROM {col.table} WHERE {where} ORDER BY {keys} LIMIT ?",
        [*params, limit]).fetchall()]


def _update(conn: Connection, col: Column, rows: list[tuple[Any, ...]]) -> int:
    """Replace each value that is still the one read; returns how many were replaced."""
    match = " AND ".join(f"{k} = ?" for k in col.key)
    done = 0
    for *key, old, new in rows:
        done += conn.execute(f"UPDATE {col.table} SET {col.column} = ? WHERE {match} AND {col.column} = ?",
                             (new, *key, old)).rowcount
    return done


async def rekey(store: Store, keyring: Keyring, *, batch: int = DEFAULT_BATCH,
                progress: Callable[[str, int], None] | None = None) -> RekeyReport:
    """Re-seal every value of `COLUMNS` not sealed with `keyring`'s current key."""
    report = RekeyReport()
    for col in COLUMNS:
        if not await store.read(partial(_exists, table=col.table)):
            continue
        name = f"{col.table}.{col.column}"
        prefix = _prefix(keyring, col)
        after: tuple[Any, ...] | None = None
        done = 0
        while True:
            rows = await store.read(partial(_page, col=col, prefix=prefix, after=after, limit=batch))
            if not rows:
                break
            after = rows[-1][:len(col.key)]
            changes = []
            for *key, value in rows:
                try:
                    changes.append((*key, value, _reseal(keyring, value, text=col.text)))
                except PayloadCipherError as exc:
                    bad = report.unreadable.setdefault(name, {})
                    bad[exc.key_id] = bad.get(exc.key_id, 0) + 1
            if changes:
                done += await store.write(partial(_update, col=col, rows=changes))
            if progress is not None:
                progress(name, done)
        report.resealed[name] = done
    return report


def _reseal(keyring: Keyring, value: Any, *, text: bool) -> Any:
    if text:
        return keyring.seal_text(keyring.unseal_text(value))
    return keyring.seal(keyring.unseal(bytes(value)))


def census(conn: Connection) -> dict[str, dict[str, int]]:
    """Per sealed column: how many values each key id sealed, and how many are plaintext."""
    out: dict[str, dict[str, int]] = {}
    for col in COLUMNS:
        if not _exists(conn, col.table):
            continue
        counts: dict[str, int] = {}
        width = len(TEXT_PREFIX) + 12 if col.text else HEADER_BYTES
        magic: Any = TEXT_PREFIX if col.text else MAGIC
        sealed = (f"CASE WHEN substr({col.column}, 1, {len(magic)}) = ? THEN substr({col.column}, 1, {width})"
                  " ELSE NULL END")
        for head, n in conn.execute(f"SELECT {sealed}, count(*) FROM {col.table}"
                                    f" WHERE {col.column} IS NOT NULL GROUP BY 1", (magic,)):
            kid = _head_key_id(head, text=col.text) or PLAINTEXT
            counts[kid] = counts.get(kid, 0) + n
        out[f"{col.table}.{col.column}"] = counts
    return out


def _head_key_id(head: Any, *, text: bool) -> str | None:
    if head is None:
        return None
    if not text:
        return sealed_key_id(bytes(head))
    if not str(head).startswith(TEXT_PREFIX):
        return None
    try:
        return sealed_key_id(base64.b64decode(str(head)[len(TEXT_PREFIX):]))
    except ValueError:
        return "?"
