"""Writes an export destination's periods: due ones on schedule, past ones on `yonglink export replay`.

A period is written whole, from the store, streamed in one read transaction: every record collected in
[start, end) grouped by dataset (and organisation), plus an empty file for each expected (dataset,
organisation) without records. Only after every file of the period is renamed into place are its
records marked exported (records.mark_exported, in chunks) and the cursor moved (records.mark_written).
A crash before that leaves no visible partial file (temp names only, removed at start) and the period
is written again, complete, under the same names; a record that arrives for a period already written
(in flight at the boundary) makes that period be written again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfoNotFoundError

import orjson
import structlog

from channels.export import files, records
from channels.export.periods import Period, Schedule
from channels.file.outbound import clean_temp_files
from engine import __version__
from engine.config import parse_duration
from engine.errors import ConfigError
from engine.store.connection import Connection

if TYPE_CHECKING:
    from engine.datasets.registry import DatasetRegistry
    from engine.store.sqlite import Store

DEFAULT_GRACE = 5.0
DEFAULT_RETENTION_DAYS = 30.0
MAX_PERIODS_PER_PASS = 200
"""Missed periods written per pass (after a long outage the rest follow in the next passes)."""

log = structlog.get_logger("yonglink.export")


@dataclass(frozen=True, slots=True)
class PeriodWritten:
    """What one period produced (for logs, the replay command and tests)."""

    period: Period
    files: tuple[records.Written, ...]
    marked: int


class PeriodExporter:
    """The export destination's writer; `store` is the engine's, `registry` names CSV columns."""

    def __init__(self, *, name: str, settings: Mapping[str, Any], store: Store,
                 registry: DatasetRegistry | None = None, facility: str | None = None) -> None:
        self.name = name
        self.store = store
        self.registry = registry
        self.root = Path(str(settings.get("dir", "var/export")))
        every = settings.get("every")
        self.timezone = str(settings.get("timezone") or "Asia/Shanghai")
        try:
            self.schedule = Schedule.from_settings(parse_duration(every) if every is not None else None,
                                                   settings.get("daily_at"), self.timezone)
        except ZoneInfoNotFoundError:
            raise ConfigError(f"export destination {name!r}: unknown time zone {self.timezone!r}"
                              " (an IANA name such as Asia/Shanghai)", key="export.timezone") from None
        except ValueError as exc:
            raise ConfigError(f"export destination {name!r}: {exc}", key="export.every") from None
        self.grace = parse_duration(settings.get("grace", DEFAULT_GRACE))
        self.format = str(settings.get("format", "ndjson"))
        self.encoding = str(settings.get("encoding", "UTF-8")).upper()
        self.datasets: tuple[str, ...] = tuple(settings.get("datasets") or ())
        self.per_org = bool(settings.get("per_organisation", False))
        self.organisations: tuple[str, ...] = tuple(settings.get("organisations") or ())
        self.retention = float(settings.get("retention_days", DEFAULT_RETENTION_DAYS)) * 86400.0
        self.fsync = bool(settings.get("fsync", True))
        self.producer = {"name": str(settings.get("producer") or facility or "yonglink"),
                         "software": f"yonglink {__version__}", "destination": name}
        self.last_written: PeriodWritten | None = None
        self._lock = asyncio.Lock()  # one period write at a time (the schedule, a test, a replay)

    async def prepare(self, now: float | None = None) -> int:
        """Create the directory, remove temp files a crash left, and start the cursor at this period."""
        now = time.time() if now is None else now
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        cleaned = await asyncio.to_thread(clean_temp_files, self.root)
        start = self.schedule.period_at(now).start
        await self.store.write(lambda c: None if records.cursor(c, self.name) is not None
                               else records.set_cursor(c, self.name, start))
        return cleaned

    def org_of(self, payload: bytes) -> str:
        """`envelope.source_org` of a record when files are split by organisation, else ''."""
        if not self.per_org:
            return ""
        try:
            env = orjson.loads(payload).get("envelope") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return ""
        return str(env.get("source_org") or "")

    def next_due(self, now: float) -> float:
        """When the period holding `now` may be written."""
        return self.schedule.period_at(now).end + self.grace

    async def export_due(self, now: float | None = None) -> list[PeriodWritten]:
        """Write every closed period not written yet, and every earlier period with late records."""
        now = time.time() if now is None else now
        nxt = await self.store.read(lambda c: records.cursor(c, self.name))
        if nxt is None:
            await self.prepare(now)
            nxt = self.schedule.period_at(now).start
        late = await self.store.read(lambda c: records.pending_times(c, self.name, nxt))
        todo = sorted({self.schedule.period_at(t) for t in late})
        period = self.schedule.period_at(nxt)
        while period.end + self.grace <= now and len(todo) < MAX_PERIODS_PER_PASS:
            todo.append(period)
            period = self.schedule.after(period)
        done = []
        for p in todo:
            done.append(await self.write_period(p, advance=p.start >= nxt))
        return done

    async def write_period(self, period: Period, *, advance: bool = False) -> PeriodWritten:
        """Write (or rewrite) one period from the store; mark its records exported after the renames."""
        async with self._lock:
            return await self._write_period(period, advance=advance)

    async def _write_period(self, period: Period, *, advance: bool) -> PeriodWritten:
        known = await self.store.read(lambda c: records.known_files(c, self.name))
        expected = self._expected(known)
        max_seq, written = await self.store.read(lambda c: self._publish(c, period, expected))
        marked = 0
        now = time.time()
        while n := await self.store.write(lambda c: records.mark_exported(
                c, self.name, period.start, period.end, max_seq, now)):
            marked += n
        await self.store.write(lambda c: records.mark_written(
            c, self.name, period.start, period.end, written, now, advance_to=period.end if advance else None))
        result = PeriodWritten(period, tuple(written), marked)
        self.last_written = result
        log.info("export period written", destination=self.name, period_start=self.schedule.iso(period.start),
                 files=len(written), records=sum(w.records for w in written))
        return result

    def _expected(self, known: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """(dataset, org) pairs that get a file even when empty: the configured datasets (else those
        written before) × the configured organisations (plus those written before) or ''."""
        base = set(self.datasets) or {d for d, _ in known}
        if not self.per_org:
            return {(d, "") for d in base}
        return {(d, o) for d in base for o in self.organisations} | \
            {(d, o) for d, o in known if d in base and o}

    def _publish(self, conn: Connection, period: Period,
                 expected: set[tuple[str, str]]) -> tuple[int, list[records.Written]]:
        """Stream each file of the period from one read transaction of the store (a reader thread:
        blocking I/O stays off the event loop, and a period never has to fit in memory)."""
        conn.execute("BEGIN")
        try:
            max_seq, counts = records.period_groups(conn, self.name, period.start, period.end)
            groups = dict.fromkeys(expected, 0) | counts
            start, end = self.schedule.label(period.start), self.schedule.label(period.end)
            out = []
            for (dataset, org), count in sorted(groups.items()):

                def payloads(dataset: str = dataset, org: str = org) -> Iterator[bytes]:
                    # Decrypted as read: a record that cannot be (lost key) fails the period, loudly, with
                    # its key id; it is written once the key is back in the keyring.
                    return map(self.store.cipher.unseal, records.group_payloads(
                        conn, self.name, period.start, period.end, dataset, org, max_seq))

                name = files.file_name(dataset, org, start, end, self.format)
                relative = f"{dataset}/{start[:8]}/{name}"
                cols = files.columns(self._fields(dataset), (orjson.loads(p) for p in payloads())) \
                    if self.format == "csv" else None
                sha, size = files.write_stream(self.root / relative, files.render(
                    payloads(), fmt=self.format, encoding=self.encoding, cols=cols), fsync=self.fsync)
                doc = files.manifest(
                    dataset=dataset, schema_version=self._version(dataset, payloads()), org=org,
                    period=(self.schedule.iso(period.start), self.schedule.iso(period.end)),
                    timezone=self.timezone, file=name, fmt=self.format, encoding=self.encoding, sha256=sha,
                    size=size, records=count, producer=self.producer,
                    written_at=self.schedule.iso(time.time()))
                files.publish_manifest(self.root / relative, doc, fsync=self.fsync)
                out.append(records.Written(dataset, org, relative, count, sha))
            return max_seq, out
        finally:
            conn.execute("COMMIT")

    def _fields(self, dataset: str) -> dict[str, str] | None:
        if self.format != "csv" or self.registry is None or dataset not in self.registry.datasets():
            return None
        return {name: info.de for name, info in self.registry.fields(dataset).items()}

    def _version(self, dataset: str, payloads: Iterator[bytes]) -> str | None:
        """The dataset schema's `x-dataset-version`, else the first record's `envelope.dataset_version`."""
        if self.registry is not None and dataset in self.registry.datasets():
            return self.registry.get(dataset).version
        for p in payloads:
            env = orjson.loads(p).get("envelope") or {}
            return str(env.get("dataset_version")) if env.get("dataset_version") else None
        return None

    async def prune(self, now: float | None = None) -> int:
        """Delete files and manifests of periods older than `retention_days`, and their records."""
        cutoff = (time.time() if now is None else now) - self.retention
        old = await self.store.read(lambda c: records.expired_files(c, self.name, cutoff))
        for relative in old:
            await asyncio.to_thread(files.remove, self.root, relative)
        await self.store.write(lambda c: records.prune(c, self.name, cutoff))
        return len(old)
