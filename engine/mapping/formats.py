"""Pure value conversions behind the `date`, `datetime` and `resident_id` transforms.

Dates: HL7 v2 TS/DTM (HL7 v2.5.1 §2.A.22 DTM: ``YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]``) and FHIR
``date`` / ``dateTime`` / ``instant`` (``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm)``) become the
dataset formats D8 (``YYYYMMDD``) and DT15 (``YYYYMMDDThhmmss``). Missing time parts of a precise-to-the-
day value are zero (HL7 "degree of precision"); a value with an offset is converted to Beijing time
(UTC+08:00) unless the transform says `timezone: keep`; a value without offset is taken as local time.
Conversions are memoised (pure functions; the OBX rows of a report share their timestamps).

Resident ID numbers: GB 11643-1999 公民身份号码, 18 characters = 6-digit address code + 8-digit birth date
+ 3-digit sequence (odd = male) + check character by ISO 7064 MOD 11-2: weights 7 9 10 5 8 4 2 1 6 3 7 9
10 5 8 4 2 over the first 17 digits, check = "10X98765432"[sum mod 11].
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from operator import mul

from engine.errors import MappingError

BEIJING = timezone(timedelta(hours=8))
"""China Standard Time: the platform's clock for DT15 values."""

_HL7_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")
_FHIR_TS = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                      r"(Z|[+-]\d{2}:\d{2})?)?$")

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
_ID18 = re.compile(r"^\d{17}[\dX]$")


def parse_timestamp(text: str) -> tuple[datetime, bool, int]:
    """(naive local datetime, had an explicit offset, precision in parts 1-6: year .. second).

    When an offset was given the datetime is aware. Raises MappingError("is not a valid date/time").
    """
    value = text.strip()
    m = _HL7_TS.match(value)
    offset: timezone | None = None
    if m:
        parts = m.groups()[:6]
        tz = m.group(7)
        if tz:
            offset = _offset(tz, tz[1:3], tz[3:5], text)
    else:
        f = _FHIR_TS.match(value)
        if not f:
            raise MappingError("is not a valid date/time", value=text)
        parts = f.groups()[:6]
        tz = f.group(7)
        if tz == "Z":
            offset = UTC
        elif tz:
            offset = _offset(tz, tz[1:3], tz[4:6], text)
    precision = sum(1 for p in parts if p is not None)
    nums = [int(p) if p is not None else d for p, d in zip(parts, (0, 1, 1, 0, 0, 0), strict=True)]
    try:
        dt = datetime(nums[0], nums[1], nums[2], nums[3], nums[4], nums[5], tzinfo=offset)
    except ValueError:
        raise MappingError("is not a valid date/time", value=text) from None
    return dt, offset is not None, precision


MAX_OFFSET_HOURS = 14
"""Real UTC offsets run from -12:00 to +14:00 (IANA tz database); HL7 v2.5.1 §2A.3.22 DTM writes them
+/-HHMM."""


def _offset(tz: str, hours: str, minutes: str, text: str) -> timezone:
    """The offset of a timestamp, or the field's MappingError when it is out of range (`+4800` raised a
    bare ValueError from `timezone`, failing the whole message as an internal error)."""
    h, m = int(hours), int(minutes)
    if h > MAX_OFFSET_HOURS or m > 59:
        raise MappingError(f"is not a valid date/time (time zone offset {tz} out of range)", value=text)
    return timezone((1 if tz[0] == "+" else -1) * timedelta(hours=h, minutes=m))


def _local(dt: datetime, has_offset: bool, keep: bool) -> datetime:
    if has_offset and not keep:
        return dt.astimezone(BEIJING)
    return dt


@lru_cache(maxsize=4096)
def to_d8(text: str, *, keep_timezone: bool = False) -> str:
    """HL7 TS / FHIR date(Time) → ``YYYYMMDD``; a value without a day is an error."""
    try:
        dt, has_offset, precision = parse_timestamp(text)
    except MappingError:
        raise MappingError("is not a valid date", value=text) from None
    if precision < 3:
        raise MappingError("is not a valid date (year and month only; D8 needs the day)", value=text)
    if precision <= 3:
        has_offset = False  # a plain date has no time to shift
    return _local(dt, has_offset, keep_timezone).strftime("%Y%m%d")


@lru_cache(maxsize=4096)
def to_dt15(text: str, *, keep_timezone: bool = False) -> str:
    """HL7 TS / FHIR dateTime → ``YYYYMMDDThhmmss`` (Beijing time when the value has an offset)."""
    dt, has_offset, precision = parse_timestamp(text)
    if precision < 3:
        raise MappingError("is not a valid date/time (DT15 needs at least the day)", value=text)
    return _local(dt, has_offset and precision > 3, keep_timezone).strftime("%Y%m%dT%H%M%S")


def mask_id(text: str) -> str:
    """An ID number as errors may quote it: the first 6 and last 4 characters, the rest as ``*``."""
    return text[:6] + "*" * max(len(text) - 10, 0) + text[-4:] if len(text) > 10 else "*" * len(text)


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID number."""
    if len(first17) != len(ID_WEIGHTS):
        raise ValueError("a resident ID check character needs exactly 17 digits")
    return ID_CHECK[sum(map(mul, map(int, first17), ID_WEIGHTS)) % 11]


def check_resident_id(text: str) -> str:
    """Return the normalised (upper-case X) 18-character ID; MappingError (masked value) when invalid."""
    value = text.strip().upper()
    if not _ID18.match(value):
        raise MappingError("is not an 18-character resident ID number (GB 11643)", value=mask_id(value))
    try:
        datetime(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise MappingError("has no valid birth date at characters 7-14 (GB 11643)",
                           value=mask_id(value)) from None
    expected = id_check_char(value[:17])
    if value[17] != expected:
        raise MappingError(f"has a wrong check character (GB 11643 MOD 11-2 expects {expected!r})",
                           value=mask_id(value))
    return value


def id_birth_date(valid_id: str) -> str:
    """D8 birth date from a checked 18-character ID."""
    return valid_id[6:14]


def id_sex(valid_id: str) -> str:
    """GB/T 2261.1 sex code from a checked ID: the 17th digit odd → 1 男性, even → 2 女性."""
    return "1" if int(valid_id[16]) % 2 else "2"
