"""`yonglink messages`: search a running engine's message log ("did message X arrive, what happened?").

`yonglink messages --control-id MSG00042` lists matches newest first; `yonglink messages --id ID` shows
one message with its route results and deliveries (raw content only when the API allows it: with the
token, or from the engine's own host when no token is configured). Same URL/token options and exit codes
as `yonglink status` (engine/commands/admin_client.py). `--id` prints the message's path (received →
each route's outcome → each delivery attempt) with local times; `--json` the API's document.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any

from engine.commands.admin_client import (
    API_ERRORS,
    add_connection_options,
    fetch,
    report_api_error,
    target_of,
)
from engine.commands.status import table
from engine.commands.views import local, message_path

COLUMNS = ("RECEIVED", "ID", "CHANNEL", "TYPE", "CONTROL ID", "FACILITY", "STATE", "ERROR")
FILTERS = (("channel", "channel"), ("control_id", "control-id"), ("state", "state"),
           ("sending_facility", "facility"), ("message_type", "type"), ("since", "since"),
           ("until", "until"), ("before", "before"), ("limit", "limit"))


def register(sub: Any) -> None:
    p = sub.add_parser("messages", help="search stored messages of a running engine")
    add_connection_options(p)
    p.add_argument("--id", help="show one message in full (results, deliveries, raw when allowed)")
    p.add_argument("--channel")
    p.add_argument("--control-id", dest="control_id", help="MSH-10")
    p.add_argument("--state", choices=("received", "filtered", "mapped", "failed", "rejected"))
    p.add_argument("--facility", dest="sending_facility", help="MSH-4 sending facility")
    p.add_argument("--type", dest="message_type", help="MSH-9, e.g. ADT^A01")
    p.add_argument("--since", help="ISO 8601 or epoch seconds")
    p.add_argument("--until", help="ISO 8601 or epoch seconds")
    p.add_argument("--before", help="page cursor: the next_before of the previous page")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=messages)


def messages(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target is None:
        return 2
    base = target.url
    if args.id:
        url = f"{base}/messages/{urllib.parse.quote(args.id, safe='')}"
    else:
        params = {key: getattr(args, key) for key, _flag in FILTERS if getattr(args, key) is not None}
        url = f"{base}/messages?{urllib.parse.urlencode(params)}"
    try:
        doc = fetch(url, target.token, args.timeout)
    except API_ERRORS as exc:
        return report_api_error(exc, target.url)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    if args.id:
        print(message_path(doc))
        return 0
    print(render_list(doc))
    return 0


def render_list(doc: dict[str, Any]) -> str:
    """A table of `GET /messages` items, then the cursor for the next page if there is one."""
    items = doc.get("items", [])
    if not items:
        return "no messages match"
    rows = [[local(m.get("received_at")), m.get("id"), m.get("channel"), m.get("message_type") or "",
             m.get("control_id") or "", m.get("sending_facility") or "", m.get("state"),
             (m.get("error") or "")[:60]] for m in items]
    out = table(COLUMNS, rows)
    if doc.get("next_before"):
        out += f"\nmore: --before {doc['next_before']}"
    return out
