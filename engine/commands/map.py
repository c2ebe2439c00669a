"""`yonglink map --input FILE [--route R] [--keys de] [--config F]`: map one message, print the records.

Without --route every route whose `match` selects the message runs (the engine's own selection) and
the output says which matched. Prints JSON: one object per result (route, dataset, record | error |
filtered). Exit 0 when every result is a record (or filtered), 1 on errors or when nothing matched.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("map", help="map one message file with the routes and print the records as JSON")
    p.add_argument("--input", "-i", required=True, help="message file (HL7 v2 ER7, FHIR JSON or XML)")
    p.add_argument("--route", "-r", help="only this route id (default: every route that matches)")
    p.add_argument("--keys", choices=("field", "de"), default="field",
                   help="key records by field name or DE id")
    p.add_argument("--config", "-c",
                   help="config file: its routes, tables and schemas (default: the shipped routes)")
    p.add_argument("--channel", default=None, help="pretend the message arrived on this channel")
    p.add_argument("--content-type", help="override the guessed content type")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import ConfigError
    from engine.mapping import build_router, load_router
    from engine.mapping.router import Router
    from engine.mapping.routetest import guess_content_type
    from engine.resources import MAPPINGS_DIR
    from engine.types import MessageState, StoredMessage

    try:
        if args.config:
            from engine.config import load_config

            router: Router = load_router(load_config(args.config))
        else:
            router = build_router(sorted(MAPPINGS_DIR.glob("*.yaml")))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.route and args.route not in {r.id for r in router.routes}:
        known = ", ".join(r.id for r in router.routes)
        print(f"unknown route {args.route!r}; routes: {known}", file=sys.stderr)
        return 1
    path = Path(args.input)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 1
    msg = StoredMessage(id=f"map-{path.stem}", channel=args.channel or "cli", received_at=time.time(),
                        content_type=args.content_type or guess_content_type(raw, path.name),
                        state=MessageState.RECEIVED, raw=raw)
    outcomes = router.route_outcomes(msg, only=args.route, observe=False)
    out = []
    for o in outcomes:
        r = o.result
        item: dict[str, Any] = {"route": r.route_id, "dataset": r.dataset}
        if r.record is not None:
            record = r.record
            if args.keys == "de" and router.datasets is not None and r.dataset:
                record = router.datasets.to_de_keys(r.dataset, record)
            item["record"] = record
        elif r.passthrough:
            item["passthrough"] = True
        elif r.filtered is not None:
            item["filtered"] = r.filtered
        else:
            item["error"] = r.error
        item["destinations"] = list(r.destinations)
        out.append(item)
    matched = sorted({o.result.route_id.split("#")[0] for o in outcomes if o.unrouted is None})
    print(f"matched routes: {', '.join(matched) if matched else '(none)'}", file=sys.stderr)
    if not matched and not args.route:  # say which routes came closest and why they did not match
        for route_id, reason in router.closest(msg):
            print(f"  closest: {route_id}: {reason}", file=sys.stderr)
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0 if matched and not any("error" in i for i in out) else 1
