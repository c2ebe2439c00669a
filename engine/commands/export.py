"""`yonglink export replay --period T`: write an export destination's period again, from the store.

The period is the one holding instant T (`2026-12-01T10:15`, local to the destination's `timezone`, or
with an offset). Its files and manifests are rewritten atomically from the records the store kept
(`retention_days`), exactly as the schedule writes them; the engine may be running meanwhile (SQLite
serialises the two writers). Exit codes: 0 written, 1 bad config or arguments, 2 store unavailable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("export", help="export destinations: rewrite a past period from the store")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    replay = verbs.add_parser("replay", help="write one period's files and manifests again")
    replay.add_argument("--config", "-c", default="config.example.yaml", help="config file (YAML)")
    replay.add_argument("--destination", "-d", help="export destination (default: the only one)")
    replay.add_argument("--period", "-p", required=True,
                        help="an instant in the period, e.g. 2026-12-01T10:15 (destination's time zone)")
    p.set_defaults(func=export)


def export(args: argparse.Namespace) -> int:
    from engine.config import load_config
    from engine.errors import ConfigError, StoreError

    try:
        config = load_config(args.config)
        exports = [d for d in config.destinations if d.type == "export"]
        chosen = [d for d in exports if args.destination in (None, d.name)]
        if len(chosen) != 1:
            names = ", ".join(d.name for d in exports) or "none configured"
            raise ConfigError(f"name one export destination with --destination (exports: {names})")
        return asyncio.run(_replay(config, chosen[0], args.period))
    except ConfigError as exc:
        print(f"yonglink: {exc}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"yonglink: {exc}", file=sys.stderr)
        return 2


async def _replay(config: Any, dest: Any, when: str) -> int:
    from channels.export.exporter import PeriodExporter
    from engine.datasets.registry import DatasetRegistry
    from engine.delivery.service import resolve_paths
    from engine.store.backends import build_store

    settings = resolve_paths(dest.settings, config.file.resolve().parent)
    store = build_store(config.engine.store, engine_lock=False)  # beside a running engine
    await store.open()
    try:
        registry = DatasetRegistry.load(config.engine.schemas_dir)
        exporter = PeriodExporter(name=dest.name, settings=settings, store=store, registry=registry,
                                  facility=config.engine.facility)
        try:
            instant = exporter.schedule.parse(when)
        except ValueError:
            print(f"yonglink: --period {when!r} is not an ISO 8601 date or time", file=sys.stderr)
            return 1
        period = exporter.schedule.period_at(instant)
        if period.end > time.time():
            print(f"yonglink: the period holding {when} ends at {exporter.schedule.iso(period.end)}; only"
                  " periods that have ended can be replayed", file=sys.stderr)
            return 1
        written = await exporter.write_period(period)
    finally:
        await store.close()
    iso = exporter.schedule.iso
    print(f"{dest.name}: period {iso(period.start)} - {iso(period.end)}")
    for f in written.files:
        print(f"  {f.records:>7} records  {exporter.root / f.file}  sha256 {f.sha256}")
    if not written.files:
        print("  no file: no records kept for this period and no dataset configured (`datasets:`)")
    return 0
