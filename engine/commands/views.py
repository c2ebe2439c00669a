"""Readable views of admin API documents for the CLI: local times instead of epoch seconds, and a message's
path (received → each route's outcome → each delivery attempt) the way the console's message page shows it."""

from __future__ import annotations

import json
import time
from typing import Any

WRAP = 100
"""Width at which long error texts are wrapped (never cut: an operator needs the whole error)."""


def local(ts: float | None) -> str:
    """Epoch seconds → `2026-12-01 14:03:07` in this machine's time zone; `-` for none."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def wrapped(text: str, indent: str) -> list[str]:
    words, lines, line = " ".join(str(text).split()).split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > WRAP:
            lines.append(indent + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(indent + line)
    return lines


def message_path(doc: dict[str, Any]) -> str:
    """`yonglink messages --id`: header facts, then the path of the message through the engine."""
    lines = [f"message {doc.get('id')}  {doc.get('state')}",
             f"  channel {doc.get('channel')}  type {doc.get('message_type') or '-'}  control id "
             f"{doc.get('control_id') or '-'}  from {doc.get('sending_facility') or '-'}"
             f"/{doc.get('sending_application') or '-'}  peer {doc.get('peer') or '-'}",
             "", "path:", f"  {local(doc.get('received_at'))}  received on {doc.get('channel')}"
             + (f" ({doc.get('charset')})" if doc.get("charset") else "")]
    if doc.get("state") == "rejected" or (doc.get("error") and not doc.get("results")):
        lines += wrapped(f"{doc.get('state')}: {doc.get('error') or ''}", "      ")
    for r in doc.get("results") or []:
        at = local(r.get("created_at"))
        if r.get("error"):
            lines.append(f"  {at}  route {r['route_id']} → {r.get('dataset') or '-'}: FAILED")
            lines += wrapped(r["error"], "      ")
        elif r.get("filtered"):
            lines.append(f"  {at}  route {r['route_id']}: filtered ({r['filtered']})")
        else:
            lines.append(f"  {at}  route {r['route_id']} → {r.get('dataset') or 'pass-through'}: mapped")
    for d in doc.get("deliveries") or []:
        for a in d.get("attempt_log") or []:
            outcome = a.get("result") or "?"
            detail = a.get("error") or a.get("response") or ""
            lines.append(f"  {local(a.get('at'))}  {d['destination']} attempt {a.get('attempt')}: {outcome}")
            if detail:
                lines += wrapped(detail, "      ")
        if d.get("state") == "queued":
            nxt = d.get("next_attempt_at")
            lines.append(f"  {local(nxt) if nxt else 'now':>19}  {d['destination']}: queued, next attempt")
        elif d.get("state") == "dead":
            lines.append(f"  {local(d.get('last_attempt_at'))}  {d['destination']}: dead-lettered")
    if doc.get("raw") is not None:
        segments = str(doc["raw"]).replace("\r\n", "\r").split("\r")
        lines += ["", "raw:", *("  " + seg for seg in segments if seg)]
    elif doc.get("raw_hidden"):
        lines += ["", f"raw: hidden ({doc['raw_hidden']})"]
    return "\n".join(lines)


def dead_letter(doc: dict[str, Any]) -> str:
    """`yonglink dlq show ID`: every fact with local times, the whole error wrapped, the payload if shown."""
    lines = [f"dead letter {doc.get('id')}  ({doc.get('kind')})",
             f"  message      {doc.get('message_id') or '-'}",
             f"  channel      {doc.get('channel') or '-'}",
             f"  destination  {doc.get('destination') or '-'}",
             f"  route        {doc.get('route_id') or '-'} → {doc.get('dataset') or '-'}",
             f"  attempts     {doc.get('attempts', 0)} (first {local(doc.get('first_attempt_at'))}, "
             f"last {local(doc.get('last_attempt_at'))})",
             f"  dead since   {local(doc.get('created_at'))}", "  error:"]
    lines += wrapped(doc.get("error") or "-", "    ")
    if doc.get("last_response"):
        lines += ["  last response:", *wrapped(doc["last_response"], "    ")]
    if doc.get("payload") is not None:
        payload = doc["payload"]
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, indent=2)
        lines += ["  payload:", *("    " + line for line in text.splitlines())]
    return "\n".join(lines)
