"""`yonglink reload [--config F | --url URL]`: ask a running engine to re-read its config file and routes.

The same as `POST /reload` (or SIGHUP): the engine loads the file again and swaps it in only if all of it is
valid. Prints the new config version, or every problem as `file:line` when the reload was refused (the
running config stays). Exit codes: 0 applied, 1 refused or the API answered with an error, 2 unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
from typing import Any

from engine.commands.admin_client import API_ERRORS, add_connection_options, call, report_api_error, target_of


def register(sub: Any) -> None:
    p = sub.add_parser("reload", help="make a running engine re-read its config and routes")
    add_connection_options(p)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.set_defaults(func=reload)


def reload(args: argparse.Namespace) -> int:
    target = target_of(args)
    if target is None:
        return 2
    try:
        doc = call("POST", target.url + "/reload", target.token, args.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 400:
            return report_api_error(exc, target.url, what="reload")
        doc = json.loads(exc.read())
    except API_ERRORS as exc:
        return report_api_error(exc, target.url, what="reload")
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    elif doc.get("ok"):
        print(f"reloaded: config version {doc.get('previous_version')} -> {doc.get('version')}, "
              f"{doc.get('routes', 0)} routes")
        for key, what in (("channels_added", "added"), ("channels_removed", "removed"),
                          ("channels_restarted", "restarted")):
            for name in doc.get(key) or []:
                print(f"  channel {name}: {what}")
        for name, err in (doc.get("channel_errors") or {}).items():
            print(f"  channel {name}: {err}")
        for item in doc.get("restart_required") or []:
            print(f"  needs a restart: {item}")
    else:
        print("reload refused; the running config stays:", file=sys.stderr)
        for err in doc.get("errors") or [doc.get("error") or "unknown reason"]:
            print(f"  {err}", file=sys.stderr)
    return 0 if doc.get("ok") else 1
