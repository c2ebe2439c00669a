"""What one export file holds and how it lands: NDJSON or CSV bytes, the manifest, the atomic write.

Layout: `<dir>/<dataset>/<YYYYMMDD>/<dataset>[_<org>]_<start>_<end>.<ndjson|csv>` and, beside it,
`<same name>.manifest.json`. Both are written with channels/file/outbound.py `write_atomically` (hidden
temp name, fsync, rename, fsync of the directory), the data file first and the manifest last: a consumer
that sees a manifest sees the complete file it describes, and checks it with the manifest's SHA-256.

CSV (RFC 4180: CRLF line ends, fields quoted when needed) has one header row whose cells name the field
and its WS 363 data element id, `name(DE02.01.039.00)`; envelope fields are `envelope.<name>`; array or
object values (e.g. lab_report `results`) are JSON in their cell.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from channels.file.outbound import TEMP_SUFFIX, fsync_dir, write_atomically

MANIFEST_SUFFIX = ".manifest.json"
ENVELOPE_FIELDS = ("dataset", "dataset_version", "source_org", "source_message_id", "record_time",
                   "operation")
"""Envelope properties in schemas/ningbo/envelope.schema.json order (the CSV's first columns)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: the header cell and how to find the value in a field- or DE-keyed record."""

    header: str
    keys: tuple[str, ...]
    envelope: bool = False


def columns(fields: Mapping[str, str] | None, records: Iterable[Mapping[str, Any]]) -> list[Column]:
    """Envelope columns, then the dataset's fields (name → DE id) in schema order; without a schema,
    every key seen in the records, sorted."""
    cols = [Column(f"envelope.{name}", (name,), envelope=True) for name in ENVELOPE_FIELDS]
    if fields is not None:
        cols += [Column(f"{name}({de})", (name, de)) for name, de in fields.items()]
    else:  # reads every record once: only for a dataset without a schema
        seen = sorted({k for r in records for k in r if k != "envelope"})
        cols += [Column(k, (k,)) for k in seen]
    return cols


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()  # numbers, booleans; arrays and objects as JSON


CSV_ROWS_PER_CHUNK = 1000


def render(payloads: Iterable[bytes], *, fmt: str, encoding: str,
           cols: Sequence[Column] | None = None) -> Iterator[bytes]:
    """The data file's bytes, in chunks: one JSON record per line (NDJSON), or CSV with a header row
    (`cols` from `columns`)."""
    codec = "gb18030" if encoding.upper() == "GB18030" else "utf-8"
    if fmt == "ndjson":
        for p in payloads:
            line = p.strip() + b"\n"
            yield line if codec == "utf-8" else line.decode("utf-8").encode(codec)
        return
    if cols is None:
        raise ValueError("CSV needs its columns")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.header for c in cols])
    for n, p in enumerate(payloads, 1):
        rec = orjson.loads(p)
        env = rec.get("envelope") or {}
        row = []
        for c in cols:
            source = env if c.envelope else rec
            value = None
            for k in c.keys:
                if k in source:
                    value = source[k]
                    break
            row.append(_cell(value))
        writer.writerow(row)
        if n % CSV_ROWS_PER_CHUNK == 0:
            yield out.getvalue().encode(codec)
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode(codec)


def file_name(dataset: str, org: str, start_label: str, end_label: str, fmt: str) -> str:
    """`person_20261201T1000_20261201T1015.ndjson`, with `_<org>` after the dataset when split by org."""
    part = f"_{_UNSAFE.sub('-', org)}" if org else ""
    return f"{dataset}{part}_{start_label}_{end_label}.{fmt}"


def manifest(*, dataset: str, schema_version: str | None, org: str, period: tuple[str, str], timezone: str,
             file: str, fmt: str, encoding: str, sha256: str, size: int, records: int,
             producer: Mapping[str, str], written_at: str) -> bytes:
    """The manifest JSON (see docs/isolation-zone.md for each key)."""
    doc = {
        "dataset": dataset, "schema_version": schema_version, "organisation": org or None,
        "period_start": period[0], "period_end": period[1], "timezone": timezone,
        "file": file, "format": fmt, "encoding": encoding, "record_count": records,
        "bytes": size, "sha256": sha256,
        "producer": dict(producer), "written_at": written_at,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def write_stream(target: Path, chunks: Iterable[bytes], *, fsync: bool = True) -> tuple[str, int]:
    """Write `chunks` to `target` atomically (hidden per-writer temp name, fsync, rename, fsync of the
    directory), never holding the whole file in memory; returns its SHA-256 and size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}{TEMP_SUFFIX}")
    digest, size = hashlib.sha256(), 0
    try:
        with temp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, target)
    if fsync:
        fsync_dir(target.parent)
    return digest.hexdigest(), size


def publish_manifest(target: Path, manifest_bytes: bytes, *, fsync: bool = True) -> None:
    """The manifest beside the data file, written atomically and after it."""
    write_atomically(target.with_name(target.name + MANIFEST_SUFFIX), manifest_bytes, fsync=fsync,
                     unique_temp=True)


def remove(root: Path, relative: str) -> None:
    """Delete a data file and its manifest (retention), then its directories if they are empty."""
    target = root / relative
    for path in (target.with_name(target.name + MANIFEST_SUFFIX), target):  # manifest first
        path.unlink(missing_ok=True)
    for parent in (target.parent, target.parent.parent):
        try:
            parent.rmdir()
        except OSError:
            break
