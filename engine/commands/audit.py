"""`yonglink audit [--action A] [--actor X] [--target ID] [--since T] [--json]`: the access audit of a running
engine (who read patient data, replayed, purged, reloaded or controlled a channel; admin role only).

Same engine/token options and exit codes as `yonglink status` (engine/commands/admin_client.py).
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
from engine.commands.views import local

COLUMNS = ("AT", "ACTION", "ACTOR", "ROLE", "REMOTE", "TARGET", "DETAIL")
ACTIONS = ("read_raw", "read_payload", "replay", "purge", "reload", "control")


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="who accessed patient data or changed something (admin role)")
    add_connection_options(p)
    p.add_argument("--action", choices=ACTIONS)
    p.add_argument("--actor", help="e.g. admin:3f2a9c1e or anonymous@127.0.0.1")
    p.add_argument("--target", help="message, dead letter or channel id")
    p.add_argument("--since", type=float, help="epoch seconds")
    p.add_argument("--until", type=float, help="epoch seconds")
    p.add_argument("--before", help="page cursor: the next_before of the previous page")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=audit)


def audit(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target is None:
        return 2
    params = {k: v for k in ("action", "actor", "target", "since", "until", "before", "limit")
              if (v := vars(args)[k]) is not None}
    try:
        doc = fetch(f"{target.url}/audit?{urllib.parse.urlencode(params)}", target.token, args.timeout)
    except API_ERRORS as exc:
        return report_api_error(exc, target.url, what="audit")
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    items = doc.get("items", [])
    if not items:
        print("no audit entries match")
        return 0
    print(table(COLUMNS, [[local(i["at"]), i["action"], i["actor"], i["role"], i.get("remote") or "",
                           i.get("target") or "", i.get("detail") or ""] for i in items]))
    if doc.get("next_before"):
        print(f"more: --before {doc['next_before']}")
    return 0
