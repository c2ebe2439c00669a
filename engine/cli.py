"""`yonglink` command line: one module per subcommand under `engine/commands/`.

Each module has `register(subparsers)` which adds its parser and sets `func(args) -> int` (exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("init", "run", "validate", "send", "map", "test", "quality", "status", "messages", "tail", "dlq",
            "reload", "audit", "export", "backup", "store", "completion")
"""Subcommand modules in `engine/commands/`, in the order `--help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yonglink", description="HL7 v2 / FHIR integration engine")
    from engine import __version__

    parser.add_argument("--version", action="version", version=f"yonglink {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"engine.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
