"""`yonglink status [--url URL] [--token T] [--json]`: a running engine's `/status` as tables.

Exit codes: 0 shown, 1 the API answered with an error (e.g. 401: token missing or wrong), 2 the admin
API could not be reached. The token may also come from `YONGLINK_ADMIN_TOKEN` (keeps it out of `ps`),
the URL from `YONGLINK_ADMIN_URL`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8081"
"""Where `config.example.yaml` puts the admin API."""
DEFAULT_TIMEOUT = 5.0

CHANNEL_COLUMNS = ("CHANNEL", "TYPE", "LISTEN", "STATE", "RECEIVED", "REJECTED", "DUPLICATE", "FILTERED",
                   "MAPPED", "FAILED", "CONN", "LAST ERROR")
DESTINATION_COLUMNS = ("DESTINATION", "TYPE", "STATE", "QUEUED", "RETRYING", "SENT", "DEAD", "OLDEST",
                       "LAST ERROR")


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """`--url`, `--token`, `--timeout`: shared by the commands that talk to the admin API."""
    p.add_argument("--url", default=os.environ.get("YONGLINK_ADMIN_URL", DEFAULT_URL),
                   help=f"admin API base URL (default $YONGLINK_ADMIN_URL or {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("YONGLINK_ADMIN_TOKEN"),
                   help="admin bearer token (default $YONGLINK_ADMIN_TOKEN)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the API")


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show channels, destinations and store of a running engine")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print the raw /status JSON")
    p.set_defaults(func=status)


def fetch(url: str, token: str | None, timeout: float) -> Any:
    """GET a JSON document from the admin API (raises urllib errors)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def report_api_error(exc: Exception, base_url: str, *, what: str | None = None) -> int:
    """Print why an admin API call failed; exit code 1 for an HTTP error answer, 2 when unreachable."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            reason = exc.reason
        hint = " (pass --token or set YONGLINK_ADMIN_TOKEN)" if exc.code in (401, 403) else ""
        prefix = f"{what}: " if what else ""
        print(f"yonglink: {prefix}HTTP {exc.code}: {reason}{hint}", file=sys.stderr)
        return 1
    reason = getattr(exc, "reason", exc)
    print(f"yonglink: cannot reach the admin API at {base_url}: {reason}", file=sys.stderr)
    return 2


def status(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/") + "/status"
    try:
        doc = fetch(url, args.token, args.timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return report_api_error(exc, args.url, what=url)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(render(doc, now=time.time()))
    return 0


# --- rendering ------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """`3d 4h`, `2h 05m`, `4m 10s`, `12s`; `-` for none."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def size(n: float | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _last_error(err: Any, now: float, width: int = 60) -> str:
    if not err:
        return ""
    text = err.get("text", "") if isinstance(err, dict) else str(err)
    at = err.get("at") if isinstance(err, dict) else None
    when = f"{duration(now - at)} ago: " if at else ""
    line = " ".join(f"{when}{text}".split())
    return line if len(line) <= width else line[: width - 1] + "…"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned text columns; numbers right-aligned."""
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) for r in rows) for i in range(len(header))]
    widths = [max(_width(row[i]) for row in cells) for i in range(len(header))]
    out = []
    for row in cells:
        parts = [(_rjust if numeric[i] else _ljust)(c, widths[i]) for i, c in enumerate(row)]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if "\u2e80" <= ch <= "\ufaff" or "\uff00" <= ch <= "\uffef" else 1 for ch in text)


def _ljust(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _rjust(text: str, width: int) -> str:
    return " " * (width - _width(text)) + text


def render(doc: dict[str, Any], *, now: float) -> str:
    """The whole report: engine line, store line, channel table, destination table."""
    eng = doc.get("engine", {})
    cfg = eng.get("config", {}) or {}
    store = doc.get("store", {})
    lines = [
        f"yonglink {eng.get('version', '?')}, up {duration(eng.get('uptime_seconds'))}"
        + (f", config {cfg.get('file')} (version {cfg.get('version')})" if cfg.get("file") else ""),
        f"store: {store.get('type', '?')} {store.get('path', '?')}, {size(store.get('size_bytes'))}",
        "",
    ]
    channels = doc.get("channels", [])
    rows = []
    for ch in channels:
        c = ch.get("counters", {})
        listen = ch.get("listen") or ch.get("url") or ch.get("queue") or ""
        rows.append([ch.get("name"), ch.get("type"), listen, ch.get("state"),
                     *(int(c.get(k, 0)) for k in ("received", "rejected", "duplicate", "filtered", "mapped",
                                                  "failed")),
                     int(ch.get("connections_open") or 0), _last_error(ch.get("last_error"), now)])
    lines.append(table(CHANNEL_COLUMNS, rows) if rows else "no channels configured")
    dests = doc.get("destinations", [])
    if dests:
        drows = [[d.get("name"), d.get("type", ""), d.get("state", ""), int(d.get("queued") or 0),
                  int(d.get("retrying") or 0), int(d.get("sent") or 0),
                  int(d.get("dead") or 0),
                  duration(d.get("oldest_queued_age_seconds")), _last_error(d.get("last_error"), now)]
                 for d in dests]
        lines += ["", table(DESTINATION_COLUMNS, drows)]
    return "\n".join(lines)
