"""The figures of the monthly bulletin: month bounds, error-text classification, percentiles and the
per-organisation / per-dataset tallies (see engine/quality/bulletin.py for what each figure means)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.mapping.formats import BEIJING

UNKNOWN_ORG = "(UNKNOWN)"
WORST_FIELDS = 5
EXAMPLES_PER_FIELD = 3
TIMELY_HOURS = 24.0
WEIGHTS = {"validity": 0.35, "completeness": 0.30, "success": 0.20, "timeliness": 0.15}
"""Score weights; see the module docstring and docs/quality.md."""

_ERROR_PART = re.compile(r"^\S+:\d+ ([A-Za-z_][\w.\[\]()]*): (.*)$", re.S)
_REQUIRED_PROPERTY = re.compile(r"'([A-Za-z_]\w*)' is a required property")
_ROW_INDEX = re.compile(r"\[\d+\]")


def month_bounds(month: str) -> tuple[float, float]:
    """`2026-11` → (start, end) epoch seconds of that month in Beijing time; ValueError if malformed."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"month must look like 2026-11, got {month!r}")
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=BEIJING)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=BEIJING)
    return start.timestamp(), end.timestamp()


def previous_month(month: str) -> str:
    """`2026-01` → `2025-12`."""
    month_bounds(month)
    year, mon = int(month[:4]), int(month[5:])
    return f"{year - 1}-12" if mon == 1 else f"{year}-{mon - 1:02d}"


def fold_org(code: str | None) -> str:
    """One key per sending organisation: trimmed and upper-cased (codes are case-insensitive)."""
    text = (code or "").strip()
    return text.upper() if text else UNKNOWN_ORG


def classify(text: str) -> str:
    """Kind of one mapper error part: required, resident_id, date, code or other."""
    if "is required but empty" in text or "is a required property" in text:
        return "required"
    if "GB 11643" in text:
        return "resident_id"
    if "valid date" in text or "date/time" in text:
        return "date"
    if "code table" in text or "is not one of" in text or "value domain" in text:
        return "code"
    return "other"


def error_parts(error: str) -> list[tuple[str, str]]:
    """`(field, kind)` for each part of a result's error text; rows as ``results[].unit``."""
    out = []
    for part in error.split("; "):
        match = _ERROR_PART.match(part)
        name, text = (match.group(1), match.group(2)) if match else ("(record)", part)
        kind = classify(text)
        required = _REQUIRED_PROPERTY.search(text)
        if required:
            name = required.group(1) if name in ("(record)", "") else f"{name}.{required.group(1)}"
        out.append((_ROW_INDEX.sub("[]", name), kind))
    return out


def parse_record_time(text: Any) -> float | None:
    """`envelope.record_time` (DT15 `YYYYMMDDTHHMMSS`, Beijing time) → epoch seconds, None if unreadable."""
    if not isinstance(text, str):
        return None
    for fmt in ("%Y%m%dT%H%M%S", "%Y%m%dT%H%M", "%Y%m%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=BEIJING).timestamp()
        except ValueError:
            continue
    return None


def nearest_rank(sorted_values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return sorted_values[int(rank) - 1]


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class FieldTally:
    missing: int = 0
    invalid: int = 0
    examples: list[str] = field(default_factory=list)

    def hit(self, message_id: str, *, invalid: bool) -> None:
        if invalid:
            self.invalid += 1
        else:
            self.missing += 1
        if len(self.examples) < EXAMPLES_PER_FIELD and message_id not in self.examples:
            self.examples.append(message_id)


@dataclass
class Tally:
    """Record-level counts for one (organisation, dataset), or for an organisation as a whole."""

    mapped: int = 0
    failed: int = 0
    filtered: int = 0
    required_total: int = 0
    required_present: int = 0
    optional_total: int = 0
    optional_present: int = 0
    invalid: dict[str, int] = field(
        default_factory=lambda: {"code": 0, "date": 0, "resident_id": 0, "other": 0}
    )
    records_with_invalid: int = 0
    delays: list[float] = field(default_factory=list)
    duplicates: int = 0
    fields: dict[str, FieldTally] = field(default_factory=dict)

    def field(self, name: str) -> FieldTally:
        tally = self.fields.get(name)
        if tally is None:
            tally = self.fields[name] = FieldTally()
        return tally

    def summary(self) -> dict[str, Any]:
        records = self.mapped + self.failed
        delays = sorted(self.delays)
        p50, p95 = nearest_rank(delays, 50), nearest_rank(delays, 95)
        worst = sorted(self.fields.items(), key=lambda kv: (-(kv[1].missing + kv[1].invalid), kv[0]))
        return {
            "records": {"mapped": self.mapped, "failed": self.failed, "filtered": self.filtered},
            "completeness": {
                "required": {
                    "present": self.required_present,
                    "total": self.required_total,
                    "rate": ratio(self.required_present, self.required_total),
                },
                "optional_mapped": {
                    "present": self.optional_present,
                    "total": self.optional_total,
                    "rate": ratio(self.optional_present, self.optional_total),
                },
            },
            "validity": {
                "invalid_values": dict(self.invalid),
                "records_with_invalid": self.records_with_invalid,
                "rate": ratio(records - self.records_with_invalid, records),
            },
            "timeliness": {
                "p50_hours": None if p50 is None else round(p50, 2),
                "p95_hours": None if p95 is None else round(p95, 2),
                "within_24h": ratio(sum(1 for d in delays if d <= TIMELY_HOURS), len(delays)),
                "records": len(delays),
            },
            "duplicates": self.duplicates,
            "worst_fields": [
                {"field": name, "missing": t.missing, "invalid": t.invalid, "examples": list(t.examples)}
                for name, t in worst[:WORST_FIELDS]
                if t.missing or t.invalid
            ],
        }
