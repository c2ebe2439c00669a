"""`yonglink tail [--follow] [--channel C] [--state S]`: new messages as they arrive at a running engine.

Without `--follow`: the last `--lines` messages, oldest first. With `--follow`: then every new one, polled
from `GET /messages` once a second until Ctrl-C (or `--stop-after S`, for scripts). One line per message:
local time, id, channel, type, control id, organisation, state and the error's start. Only metadata is
shown, never raw content. Exit codes as `yonglink status`.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.parse
from typing import Any

from engine.commands.admin_client import (
    API_ERRORS,
    add_connection_options,
    fetch,
    report_api_error,
    target_of,
)
from engine.commands.views import local

POLL_SECONDS = 1.0
OVERLAP_SECONDS = 5.0
"""Each poll asks again for the last few seconds, so a message committed in the same instant as the previous
poll (received_at is set before its commit) is not missed; ids already printed are skipped."""
PAGE = 500


def register(sub: Any) -> None:
    p = sub.add_parser("tail", help="show messages as they arrive (metadata only)")
    add_connection_options(p)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new messages")
    p.add_argument("--channel")
    p.add_argument("--state", choices=("received", "filtered", "mapped", "failed", "rejected"))
    p.add_argument("--lines", "-n", type=int, default=20, help="messages shown before following")
    p.add_argument("--stop-after", type=float, help="stop following after this many seconds")
    p.set_defaults(func=tail)


def line(m: dict[str, Any]) -> str:
    error = " ".join(str(m.get("error") or "").split())[:70]
    return (f"{local(m.get('received_at'))}  {m.get('id')}  {m.get('channel')}  "
            f"{m.get('message_type') or '-'}  {m.get('control_id') or '-'}  "
            f"{m.get('sending_facility') or '-'}  {m.get('state')}"
            + (f"  {error}" if error else ""))


def tail(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target is None:
        return 2
    filters = {k: v for k, v in (("channel", args.channel), ("state", args.state)) if v}

    def page(**extra: Any) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({**filters, **extra})
        doc = fetch(f"{target.url}/messages?{query}", target.token, args.timeout)
        items: list[dict[str, Any]] = doc["items"]
        return items

    try:  # one fetch: the newest page is both what is shown now and what counts as already seen
        known = list(reversed(page(limit=max(PAGE, args.lines))))
    except API_ERRORS as exc:
        return report_api_error(exc, target.url)
    for m in known[-args.lines:] if args.lines > 0 else []:
        print(line(m), flush=True)
    if not args.follow:
        return 0
    seen = {m["id"] for m in known}
    newest = max((m["received_at"] for m in known), default=time.time())
    deadline = time.monotonic() + args.stop_after if args.stop_after else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            try:
                found = page(since=newest - OVERLAP_SECONDS, limit=PAGE)
            except API_ERRORS as exc:
                print(f"yonglink: {exc} (retrying)", file=sys.stderr)
                continue
            for m in reversed(found):
                if m["id"] not in seen:
                    seen.add(m["id"])
                    print(line(m), flush=True)
                newest = max(newest, m["received_at"])
    except KeyboardInterrupt:
        return 0
    return 0
