"""structlog set-up: JSON lines off a terminal, key/value on one, and patient data redacted.

The redaction processor is on by default (Camel turned its `logPhi` default off for the same reason):
at INFO and above it drops the values of keys that carry patient data and masks ID-number, phone and
HL7-segment shapes inside any other string, so a careless `log.info(..., text=str(exc))` cannot leak a
PID segment. DEBUG keeps everything, for a developer's own machine.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from engine.config import LogConfig

PHI_KEYS = frozenset({
    "name", "patient_name", "family_name", "given_name", "id_number", "identifier", "citizen_id",
    "phone", "telephone", "mobile", "address", "birth_date", "dob", "raw", "payload", "record", "body",
    "message_text", "segment", "pid", "nk1",
})
"""Keys whose values are patient data wherever they appear in an event."""

REDACTED = "[redacted]"
_PATTERNS = (
    re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)"),           # GB 11643 resident ID number
    re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"),             # mainland mobile number
    re.compile(r"(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)"),      # landline with area code
    re.compile(r"\b(PID|NK1|PV1|GT1|IN1|OBX|DG1|AL1|MSH)\|[^\r\n]*"),  # HL7 segments
)
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "warn": 30, "error": 40, "critical": 50,
           "exception": 40}


def mask_text(text: str) -> str:
    """Mask ID numbers, phone numbers and whole HL7 segments inside free text."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact_phi(_logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: remove patient data from events at INFO and above."""
    if _LEVELS.get(method, 20) < 20:
        return event
    for key in list(event):
        value = event[key]
        if key.lower() in PHI_KEYS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = mask_text(value)
    return event


def configure_logging(config: LogConfig, *, stream: Any = None) -> None:
    """Install the processor chain process-wide (structlog is global by design)."""
    stream = stream or sys.stderr
    level = _LEVELS[config.level]
    render_json = config.format == "json" or (config.format == "auto" and not stream.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    processors += [structlog.processors.StackInfoRenderer(), structlog.processors.format_exc_info]
    if config.redact:  # after format_exc_info, so exception text is masked too
        processors.append(redact_phi)
    processors += [
        structlog.processors.JSONRenderer() if render_json else structlog.dev.ConsoleRenderer(colors=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream, force=True)
