"""`yonglink status [--config F | --url URL] [--token T] [--json] [--check]`: a running engine's `/status`.

Which engine, the token and the exit codes are engine/commands/admin_client.py's (0 shown, 1 the API
answered with an error, 2 unreachable). `--check` is for monitoring scripts: it exits 1 when anything needs
a person — a destination down or blocked, a channel in error or stopped while enabled — and lists what.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from engine.commands.admin_client import (
    API_ERRORS,
    add_connection_options,
    fetch,
    report_api_error,
    target_of,
)

CHANNEL_COLUMNS = ("CHANNEL", "TYPE", "LISTEN", "STATE", "RECEIVED", "REJECTED", "DUPLICATE", "FILTERED",
                   "MAPPED", "FAILED", "CONN", "LAST ERROR")
DESTINATION_COLUMNS = ("DESTINATION", "TYPE", "STATE", "QUEUED", "RETRYING", "SENT", "DEAD", "OLDEST",
                       "LAST ERROR")
NODE_COLUMNS = ("NODE", "HOST", "PID", "STATE", "HEARTBEAT", "CONFIG", "CHANNELS", "SINGLETONS")
BAD_DESTINATION_STATES = ("down", "blocked")
BAD_CHANNEL_STATES = ("error", "stopped", "reconnecting")


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show channels, destinations and store of a running engine")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print the raw /status JSON")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a destination is down/blocked or a channel in error (for monitoring)")
    p.set_defaults(func=status)


def status(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target is None:
        return 2
    url = target.url + "/status"
    try:
        doc = fetch(url, target.token, args.timeout)
    except API_ERRORS as exc:
        return report_api_error(exc, target.url, what=url)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    elif not args.check:
        print(render(doc, now=time.time()))
    if args.check:
        found = problems(doc)
        for line in found:
            print(f"PROBLEM {line}")
        if not found:
            print("OK: every enabled channel started, every destination reachable")
        return 1 if found else 0
    return 0


def problems(doc: dict[str, Any]) -> list[str]:
    """What `--check` reports: one line per channel or destination that needs attention."""
    out = []
    for ch in doc.get("channels", []):
        if ch.get("enabled", True) and ch.get("state") in BAD_CHANNEL_STATES:
            why = _last_error(ch.get("last_error"), time.time(), width=100)
            out.append(f"channel {ch.get('name')} is {ch.get('state')}" + (f": {why}" if why else ""))
    for d in doc.get("destinations", []):
        if d.get("state") in BAD_DESTINATION_STATES:
            why = _last_error(d.get("last_error"), time.time(), width=100)
            out.append(f"destination {d.get('name')} is {d.get('state')} ({int(d.get('queued') or 0)} queued)"
                       + (f": {why}" if why else ""))
    return out + cluster_problems(doc)


def cluster_problems(doc: dict[str, Any]) -> list[str]:
    """Nodes of the cluster (engine/cluster/) that are gone without stopping, or run another config."""
    cluster = doc.get("cluster") or {}
    nodes = cluster.get("nodes") or []
    mine = (doc.get("engine", {}).get("config") or {}).get("version")
    lease = float(cluster.get("lease") or 0)
    out = []
    for n in nodes:
        if n.get("state") == "stopped":
            continue
        if lease and float(n.get("heartbeat_age") or 0) > lease:
            out.append(f"node {n.get('id')} has not been heard of for {duration(n.get('heartbeat_age'))}"
                       " (its deliveries and singletons moved to other nodes)")
        elif mine and n.get("config_version") != mine:
            out.append(f"node {n.get('id')} runs config version {n.get('config_version')}, this node {mine}")
    return out


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
    """The whole report: engine line, store line, channel table, destination table, and in a cluster
    (PostgreSQL store) the node table."""
    eng = doc.get("engine", {})
    cfg = eng.get("config", {}) or {}
    store = doc.get("store", {})
    lines = [
        f"yonglink {eng.get('version', '?')}, up {duration(eng.get('uptime_seconds'))}"
        + (f", config {cfg.get('file')} (version {cfg.get('version')})" if cfg.get("file") else ""),
        f"store: {store.get('type', '?')} {store.get('path') or store.get('database') or '?'},"
        f" {size(store.get('size_bytes'))}",
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
    cluster = doc.get("cluster") or {}
    if cluster.get("backend", "local") != "local":  # one node on SQLite: the lines above say it all
        nrows = [[n.get("id"), n.get("host"), n.get("pid"), n.get("state"),
                  duration(n.get("heartbeat_age")) + " ago", n.get("config_version"),
                  ",".join(n.get("channels") or []) or "-", ",".join(n.get("singletons") or []) or "-"]
                 for n in cluster.get("nodes") or []]
        lines += ["", f"cluster: this node {cluster.get('node_id')}, heartbeat {cluster.get('heartbeat')} s,"
                      f" lease {cluster.get('lease')} s", table(NODE_COLUMNS, nrows)]
    return "\n".join(lines)
