"""`yonglink dlq list|show|replay|purge`: the dead-letter queue of a running engine, over the admin API.

`list` shows dead letters newest first (filters: --channel, --destination, --kind, --error, --since,
--until; --before pages); `show ID` prints one with its payload when the API allows it; `replay ID` or
`replay --all` with the same filters re-queues (add `--remap` to map the stored raw message again after
fixing a route); `purge ID...` deletes dead letters for good (the engine writes an audit row). Same
`--url` / `--token` (YONGLINK_ADMIN_TOKEN) options and exit codes as `yonglink status`: 0 ok, 1 the API
refused, 2 the API is unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from engine.commands.status import add_connection_options, report_api_error, table

COLUMNS = ("CREATED", "ID", "KIND", "CHANNEL", "DESTINATION", "ROUTE", "ATTEMPTS", "ERROR")
FILTERS = ("channel", "destination", "kind", "error", "since", "until")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel")
    p.add_argument("--destination")
    p.add_argument("--kind", choices=("delivery", "mapping"))
    p.add_argument("--error", help="text the error contains (case-insensitive)")
    p.add_argument("--since", help="ISO 8601 or epoch seconds")
    p.add_argument("--until", help="ISO 8601 or epoch seconds")


def register(sub: Any) -> None:
    p = sub.add_parser("dlq", help="list, show, replay or purge dead letters of a running engine")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="dead letters, newest first")
    _filters(ls)
    ls.add_argument("--before", help="page cursor: the next_before of the previous page")
    ls.add_argument("--limit", type=int, default=50)
    show = verbs.add_parser("show", help="one dead letter (payload when allowed)")
    show.add_argument("id")
    replay = verbs.add_parser("replay", help="re-queue one dead letter, or all matching the filters")
    replay.add_argument("id", nargs="?")
    replay.add_argument("--all", action="store_true", help="replay every dead letter matching the filters")
    replay.add_argument("--remap", action="store_true", help="map the stored raw message again")
    _filters(replay)
    purge = verbs.add_parser("purge", help="delete dead letters for good (audited)")
    purge.add_argument("ids", nargs="+", metavar="ID")
    for verb in (ls, show, replay, purge):
        add_connection_options(verb)
        verb.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=dlq)


def call(method: str, url: str, token: str | None, timeout: float, body: Any = None) -> Any:
    """One admin API request; JSON in and out (raises urllib errors)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Accept": "application/json"})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def dlq(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    try:
        if args.verb == "list":
            keys = (*FILTERS, "before", "limit")
            params = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
            doc = call("GET", f"{base}/dlq?{urllib.parse.urlencode(params)}", args.token, args.timeout)
            print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else render_list(doc))
        elif args.verb == "show":
            doc = call("GET", f"{base}/dlq/{_q(args.id)}", args.token, args.timeout)
            print(json.dumps(doc, indent=2, ensure_ascii=False))
        elif args.verb == "replay":
            if bool(args.id) == bool(args.all):
                print("yonglink: dlq replay needs an ID or --all (with filters)", file=sys.stderr)
                return 1
            if args.id:
                doc = call("POST", f"{base}/dlq/{_q(args.id)}/replay", args.token, args.timeout,
                           {"remap": args.remap})
            else:
                body = {k: getattr(args, k) for k in FILTERS if getattr(args, k) is not None}
                body["remap"] = args.remap
                doc = call("POST", f"{base}/dlq/replay", args.token, args.timeout, body)
            print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else
                  f"re-queued {doc['requeued']}, re-mapped {doc['remapped']}, skipped {len(doc['skipped'])}")
            for why in doc.get("skipped", []) if not args.json else []:
                print(f"  skipped {why}")
        else:
            done = [call("DELETE", f"{base}/dlq/{_q(i)}", args.token, args.timeout) for i in args.ids]
            print(json.dumps(done, indent=2) if args.json else f"purged {len(done)} dead letter(s)")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return report_api_error(exc, args.url)
    return 0


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def render_list(doc: dict[str, Any]) -> str:
    """A table of `GET /dlq` items, then the cursor for the next page if there is one."""
    items = doc.get("items", [])
    if not items:
        return "no dead letters match"
    rows = [[time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["created_at"])), d["id"], d["kind"],
             d.get("channel") or "", d.get("destination") or "", d.get("route_id") or "",
             d.get("attempts", 0),
             " ".join(str(d.get("error") or "").split())[:60]] for d in items]
    out = table(COLUMNS, rows)
    if doc.get("next_before"):
        out += f"\n(more: --before {doc['next_before']})"
    return out
