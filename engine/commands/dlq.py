"""`yonglink dlq list|show|replay|purge`: the dead-letter queue of a running engine, over the admin API.

`list` shows dead letters newest first (filters: --channel, --destination, --kind, --error, --since,
--until; --before pages); `show ID` prints one with its payload when the API allows it; `replay ID` or
`replay --all` with the same filters re-queues (add `--remap` to map the stored raw message again after
fixing a route); `purge ID...` deletes dead letters for good (the engine writes an audit row). Same
`--url` / `--token` (YONGLINK_ADMIN_TOKEN) options and exit codes as `yonglink status`: 0 ok, 1 the API
refused, 2 the API is unreachable (engine/commands/admin_client.py picks the engine). `list` shows the
control id and sending organisation of each dead letter's message and the whole error (wrapped); `show`
prints local times; `replay --all` reports its progress page by page.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from engine.commands.admin_client import API_ERRORS, add_connection_options, call, report_api_error, target_of
from engine.commands.status import table
from engine.commands.views import dead_letter, local, wrapped

COLUMNS = ("CREATED", "ID", "KIND", "CONTROL ID", "FACILITY", "CHANNEL", "DESTINATION", "ROUTE", "ATTEMPTS")
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


def dlq(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target is None:
        return 2
    base, token = target.url, target.token
    try:
        if args.verb == "list":
            keys = (*FILTERS, "before", "limit")
            params = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
            doc = call("GET", f"{base}/dlq?{urllib.parse.urlencode(params)}", token, args.timeout)
            print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else render_list(doc))
        elif args.verb == "show":
            doc = call("GET", f"{base}/dlq/{_q(args.id)}", token, args.timeout)
            print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else dead_letter(doc))
        elif args.verb == "replay":
            if bool(args.id) == bool(args.all):
                print("yonglink: dlq replay needs an ID or --all (with filters)", file=sys.stderr)
                return 1
            if args.id:
                doc = call("POST", f"{base}/dlq/{_q(args.id)}/replay", token, args.timeout,
                           {"remap": args.remap})
            else:
                body = {k: getattr(args, k) for k in FILTERS if getattr(args, k) is not None}
                body["remap"] = args.remap
                doc = replay_all(base, token, args.timeout, body)
            print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else
                  f"re-queued {doc['requeued']}, re-mapped {doc['remapped']}, skipped {len(doc['skipped'])}")
            for why in doc.get("skipped", []) if not args.json else []:
                print(f"  skipped {why}")
        else:
            done = [call("DELETE", f"{base}/dlq/{_q(i)}", token, args.timeout) for i in args.ids]
            print(json.dumps(done, indent=2) if args.json else f"purged {len(done)} dead letter(s)")
    except API_ERRORS as exc:
        return report_api_error(exc, target.url)
    return 0


def replay_all(base: str, token: str | None, timeout: float, body: dict[str, Any]) -> dict[str, Any]:
    """`replay --all`: the API replays at most one page per call; call again until a round moves nothing
    (what is left was skipped, with its reason), printing progress after each round on stderr."""
    total: dict[str, Any] = {"requeued": 0, "remapped": 0, "skipped": []}
    rounds = 0
    while True:
        doc = call("POST", f"{base}/dlq/replay", token, timeout, body)
        rounds += 1
        total["requeued"] += doc["requeued"]
        total["remapped"] += doc["remapped"]
        moved = doc["requeued"] + doc["remapped"]
        if moved:
            print(f"yonglink: replay round {rounds}: {total['requeued'] + total['remapped']} replayed so far",
                  file=sys.stderr)
        else:
            total["skipped"] = doc["skipped"]
            return total


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def render_list(doc: dict[str, Any]) -> str:
    """A table of `GET /dlq` items, then the cursor for the next page if there is one."""
    items = doc.get("items", [])
    if not items:
        return "no dead letters match"
    rows = [[local(d["created_at"]), d["id"], d["kind"], d.get("control_id") or "",
             d.get("sending_facility") or "", d.get("channel") or "", d.get("destination") or "",
             d.get("route_id") or "", d.get("attempts", 0)] for d in items]
    lines = table(COLUMNS, rows).split("\n")
    out_lines = [lines[0]]
    for line, d in zip(lines[1:], items, strict=True):
        out_lines.append(line)
        out_lines += wrapped(d.get("error") or "", "    ")
    out = "\n".join(out_lines)
    if doc.get("next_before"):
        out += f"\n(more: --before {doc['next_before']})"
    return out
