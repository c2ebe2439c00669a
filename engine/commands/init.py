"""`yonglink init DIR`: write a starter project that `validate`, `test` and `run` accept as it is.

    DIR/config.yaml                       one MLLP channel, a file destination, the shipped schemas/tables
    DIR/routes/example_person.yaml        one example route (person ← ADT^A01/A04 PID)
    DIR/routes/tests/example_person.yaml  its route tests
    DIR/samples/example_adt_a01.hl7       a made-up ADT^A01 (no real patient) for `yonglink send`

The files are package data (`engine/commands/starter/`), copied as they are. An existing file is never
overwritten: the command names it and exits 1 without writing anything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

STARTER = Path(str(files("engine.commands") / "starter"))
"""The starter project's files (a real folder: pip installs wheels unpacked)."""


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="write a starter project (config, an example route and its test)")
    p.add_argument("dir", metavar="DIR", help="folder to write into (created if missing)")
    p.set_defaults(func=run)


def starter_files() -> list[Path]:
    """The starter project's files, relative to its root."""
    return sorted(p.relative_to(STARTER) for p in STARTER.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    names = starter_files()
    existing = [target / name for name in names if (target / name).exists()]
    if existing:
        print(f"yonglink init: {existing[0]} already exists; nothing written (choose an empty folder)",
              file=sys.stderr)
        return 1
    for name in names:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STARTER / name, target / name)
    print(f"wrote a yonglink project in {target}/:")
    for name in names:
        print(f"  {name.as_posix()}")
    print(f"next: cd {target} && yonglink validate && yonglink test && yonglink run")
    return 0
