"""structlog set-up: JSON lines off a terminal, key/value on one, and patient data redacted.

The redaction processor is on by default (Camel turned its `logPhi` default off for the same reason). At
INFO and above it works in three layers, because no single one is enough:

1. Keys. The value of a key that carries patient data is replaced wherever it appears, also inside nested
   dicts and lists: `name`, `id_number`, `phone`, `address*`, `raw`, `record`, … and any key ending in
   `name` that is not known to name a thing rather than a person (`org_name`, `dataset_name`, …).
   Bytes values are dropped whatever the key (raw payloads are bytes).
2. Shapes. In every other string (including the event text and formatted exceptions): whole HL7 segments
   (`PID|…` up to the end of the line), FHIR JSON (`"resourceType"`), GB 11643 ID numbers (18 digits, or
   the old 15), mainland mobile and landline numbers, e-mail addresses.
3. Chinese text. A Chinese name cannot be told from other Chinese words by a pattern. Runs of 2–4 Han
   characters standing alone (the shape of a name: 张三, 欧阳娜娜) and Chinese address shapes (…省…市…路…号)
   are masked.

Limits, honestly: a romanised name ("ZHANG SAN") in free text, or a Chinese name inside a longer Chinese
sentence ("患者张三的出生日期无效"), is NOT caught. Code must therefore log ids (message id, control id,
type, channel) and never interpolate values into event text; the layers above are a safety net for
mistakes, not a licence. DEBUG keeps everything, for a developer's own machine; `engine.log.redact: false`
turns the processor off entirely.

Keys in `SAFE_KEYS` (ids, channel, destination, message type, …) are never masked, so their values stay
searchable (an ACK control id of 18 digits must not look like an ID number).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from engine.config import LogConfig

PHI_KEYS = frozenset({
    "name", "patient_name", "family_name", "given_name", "id_number", "id_no", "identifier", "citizen_id",
    "phone", "telephone", "mobile", "address", "birth_date", "dob", "email", "raw", "payload", "record",
    "body", "message_text", "text_raw", "segment", "pid", "nk1", "xm", "sfzh", "lxdh", "jtzz",
})
"""Keys whose values are patient data wherever they appear in an event (`xm`/`sfzh`/`lxdh`/`jtzz` are
the pinyin initials Chinese HIS schemas use for name / ID number / phone / home address)."""

NON_PERSON_NAMES = frozenset({
    "org", "dept", "ward", "vaccine", "item", "disease", "diagnosis", "tcm_disease",
    "discharge_diagnosis", "admission_diagnosis", "site", "manufacturer", "work_org", "route", "dataset",
    "channel", "destination", "table", "file", "host", "field", "logger", "event", "type", "code", "drug",
    "test", "specimen", "unit", "method", "class", "module", "func", "thread", "process",
})
"""Prefixes of `<prefix>_name` keys that name a thing, not a person (those keep their value)."""

SAFE_KEYS = frozenset({
    "event", "level", "timestamp", "logger", "logger_name", "channel", "destination", "message_id",
    "delivery_id", "dead_letter_id", "control_id", "message_type", "route_id", "dataset", "state",
    "action", "method", "path", "status", "version", "peer", "remote", "duration_ms", "attempt",
    "attempts", "count", "error_type", "admin",
})
"""Keys whose values are identifiers or enums, never patient data: left exactly as logged."""

REDACTED = "[redacted]"
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ADDRESS_WORDS = "省|市|区|县|镇|乡|村|路|街|巷|弄|号|室|栋|幢|单元"
_PATTERNS = (
    re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Z0-9]{2}\|[^\r\n]*"),       # any HL7 v2 segment (ch. 2.5), to EOL
    re.compile(r"\{.*['\"]resourceType['\"].*", re.DOTALL),          # FHIR JSON resource text
    re.compile(r"(?<!\d)\d{17}[\dXx](?![\dA-Za-z])"),                  # GB 11643-1999 resident ID
    re.compile(r"(?<!\d)\d{6}\d{2}[01]\d[0-3]\d{4}(?!\d)"),          # first-generation 15-digit ID
    re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)"),  # mainland mobile
    re.compile(r"(?<!\d)\(?0\d{2,3}\)?[ -]?\d{7,8}(?!\d)"),          # landline with area code
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),                          # e-mail address
    re.compile(rf"[{_HAN}\d]*[{_HAN}](?:{_ADDRESS_WORDS})[{_HAN}\d\-#]*"),  # Chinese address shape
    re.compile(rf"(?<![{_HAN}])[{_HAN}]{{2,4}}(?![{_HAN}])"),          # standalone 2-4 Han run: a name
)
_PERSON_NAME_KEY = re.compile(r"^(?:(?P<prefix>.+)_)?name$")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50,
           "exception": 40, "fatal": 50}


def mask_text(text: str) -> str:
    """Mask HL7 segments, FHIR JSON, ID numbers, phones, e-mails and Chinese name/address shapes."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


_QUOTED_VALUE = re.compile(r"'[^'\n]{0,400}'")
"""A value quoted in an error text: the mapper quotes the offending input (`PID-7 '19851345' is not a valid
date`, engine/mapping/mapper.py `shown`), which may be any patient datum, not only shapes mask_text knows."""


def mask_error(text: str) -> str:
    """An error text for someone who may not see patient data: quoted input values and known shapes
    masked; field names, paths, route file:line and the reason stay, so the error is still actionable."""
    return mask_text(_QUOTED_VALUE.sub("'" + REDACTED + "'", text))


def is_phi_key(key: str) -> bool:
    """True when a value under this key is patient data (see the module docstring, layer 1)."""
    k = key.lower()
    if k in PHI_KEYS or k.startswith("address"):
        return True
    m = _PERSON_NAME_KEY.match(k)
    return m is not None and (m.group("prefix") or "") not in NON_PERSON_NAMES


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return REDACTED
    if depth > 8:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: (REDACTED if isinstance(k, str) and is_phi_key(k) else _scrub(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact_phi(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: remove patient data from events at INFO and above."""
    level = event.get("level", method)
    if _LEVELS.get(str(level).lower(), _LEVELS.get(method, 20)) < 20:
        return event
    for key in list(event):
        if key in SAFE_KEYS and key != "event":
            continue
        value = event[key]
        if is_phi_key(key):
            event[key] = REDACTED
        elif value is not None and not isinstance(value, bool | int | float):
            event[key] = _scrub(value)
    return event


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure_logging(config: LogConfig, *, stream: Any = None) -> None:
    """Install the processor chain process-wide (structlog is global by design).

    Standard-library loggers (aiohttp, asyncio, third-party libraries) go through the same chain, so
    their lines are JSON too and redacted the same way.
    """
    stream = stream or sys.stderr
    level = _LEVELS[config.level]
    isatty = getattr(stream, "isatty", lambda: False)
    render_json = config.format == "json" or (config.format == "auto" and not isatty())
    renderer: Any = (structlog.processors.JSONRenderer() if render_json
                     else structlog.dev.ConsoleRenderer(colors=False))
    tail: list[Any] = [structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info]
    if config.redact:  # after format_exc_info, so exception text is masked too
        tail.append(redact_phi)
    structlog.configure(
        processors=[*_shared_processors(), *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail, renderer],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.WARNING))
    # Access lines come from engine.admin's structlog access logger; aiohttp's own is off.
    logging.getLogger("aiohttp.access").setLevel(logging.CRITICAL + 1)
