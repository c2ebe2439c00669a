"""The export destination's tables: records collected per destination, files written, the schedule cursor.

`export_records` holds each record routed to an export destination (one row per delivery id, so a
re-send after a crash is harmless) with the time it was collected; `exported_at` is set only after the
period's file was renamed into place. `export_files` lists what was written for each (dataset,
organisation, period); `export_cursor` is the start of the next period not yet written, so a restart
writes every period it missed (empty ones included). Functions take a connection and run in the store's
writer (writes) or a reader (queries).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from engine.store.connection import Connection

# Tables: export_records, export_files, export_cursor (engine/store/migrations/0001_schema.*.sql).


@dataclass(frozen=True, slots=True)
class Collected:
    """One record handed to an export destination."""

    delivery_id: str
    dataset: str
    org: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Written:
    """One file of a period, as recorded after its rename."""

    dataset: str
    org: str
    file: str
    records: int
    sha256: str


def collect(conn: Connection, destination: str, rows: Sequence[Collected], now: float) -> None:
    """Keep records for the period holding `now` (a delivery id seen before is ignored)."""
    conn.executemany(
        "INSERT INTO export_records (destination, delivery_id, dataset, org, collected_at, payload)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (destination, delivery_id) DO NOTHING",
        [(destination, r.delivery_id, r.dataset, r.org, now, r.payload) for r in rows])


def cursor(conn: Connection, destination: str) -> float | None:
    row = conn.execute("SELECT next_period_start FROM export_cursor WHERE destination = ?",
                       (destination,)).fetchone()
    return None if row is None else float(row[0])


def set_cursor(conn: Connection, destination: str, start: float) -> None:
    conn.execute("INSERT INTO export_cursor (destination, next_period_start) VALUES (?, ?)"
                 " ON CONFLICT (destination) DO UPDATE SET next_period_start = excluded.next_period_start"
                 " WHERE excluded.next_period_start > export_cursor.next_period_start", (destination, start))


def pending_times(conn: Connection, destination: str, before: float) -> list[float]:
    """Collection times of records not yet exported, collected before `before` (late or crashed periods)."""
    return [r[0] for r in conn.execute(
        "SELECT collected_at FROM export_records WHERE destination = ? AND exported_at IS NULL"
        " AND collected_at < ? ORDER BY collected_at", (destination, before))]


def period_groups(conn: Connection, destination: str, start: float,
                  end: float) -> tuple[int, dict[tuple[str, str], int]]:
    """The highest seq of [start, end) and its record count per (dataset, org). Call it and
    `group_payloads` in one read transaction, so both see the same records."""
    counts: dict[tuple[str, str], int] = {}
    max_seq = 0
    for dataset, org, n, top in conn.execute(
            "SELECT dataset, org, count(*), max(seq) FROM export_records WHERE destination = ?"
            " AND collected_at >= ? AND collected_at < ? GROUP BY dataset, org", (destination, start, end)):
        counts[(dataset, org)] = n
        max_seq = max(max_seq, top)
    return max_seq, counts


def group_payloads(conn: Connection, destination: str, start: float, end: float, dataset: str,
                   org: str, max_seq: int) -> Iterator[bytes]:
    """The payloads of one (dataset, org) of [start, end) in collection order, read lazily."""
    for (payload,) in conn.execute(
            "SELECT payload FROM export_records WHERE destination = ? AND collected_at >= ?"
            " AND collected_at < ? AND dataset = ? AND org = ? AND seq <= ? ORDER BY seq",
            (destination, start, end, dataset, org, max_seq)):
        yield bytes(payload)


def known_files(conn: Connection, destination: str) -> list[tuple[str, str]]:
    """(dataset, org) pairs this destination has written before (they get a file in empty periods)."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT DISTINCT dataset, org FROM export_files WHERE destination = ?", (destination,))]


MARK_CHUNK = 5000
"""Records marked exported per transaction: a big period must not hold the store's writer (and the
ACKs waiting on it) for seconds; measured here, 100,000 rows in one UPDATE took 1.6 s."""


def mark_exported(conn: Connection, destination: str, start: float, end: float, max_seq: int,
                  now: float) -> int:
    """After the renames: mark up to MARK_CHUNK records of the period exported; returns how many."""
    return conn.execute(
        "UPDATE export_records SET exported_at = ? WHERE seq IN (SELECT seq FROM export_records"
        " WHERE destination = ? AND exported_at IS NULL AND collected_at >= ? AND collected_at < ?"
        " AND seq <= ? LIMIT ?)", (now, destination, start, end, max_seq, MARK_CHUNK)).rowcount


def mark_written(conn: Connection, destination: str, start: float, end: float,
                 files: Sequence[Written], now: float, *, advance_to: float | None) -> None:
    """After the records are marked: list the period's files and move the cursor past it."""
    conn.executemany(
        "INSERT INTO export_files (destination, dataset, org, period_start, period_end, file,"
        " records, sha256, written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (destination, dataset, org, period_start) DO UPDATE SET"
        " period_end = excluded.period_end, file = excluded.file, records = excluded.records,"
        " sha256 = excluded.sha256, written_at = excluded.written_at",
        [(destination, f.dataset, f.org, start, end, f.file, f.records, f.sha256, now) for f in files])
    if advance_to is not None:
        set_cursor(conn, destination, advance_to)


def expired_files(conn: Connection, destination: str, before: float) -> list[str]:
    """Files (relative to the destination's dir) of periods that ended before `before`."""
    return [r[0] for r in conn.execute(
        "SELECT file FROM export_files WHERE destination = ? AND period_end < ?", (destination, before))]


def prune(conn: Connection, destination: str, before: float) -> int:
    """Forget exported records and file rows of periods that ended before `before`."""
    conn.execute("DELETE FROM export_files WHERE destination = ? AND period_end < ?", (destination, before))
    cur = conn.execute("DELETE FROM export_records WHERE destination = ? AND collected_at < ?"
                       " AND exported_at IS NOT NULL", (destination, before))
    return cur.rowcount
