"""Subcommands of the `yonglink` CLI (see engine/cli.py), and the defaults they share."""

from __future__ import annotations

from pathlib import Path

from engine.resources import ROUTE_TESTS_DIR

PROJECT_CONFIG = "config.yaml"
"""The config of a project written by `yonglink init`."""
EXAMPLE_CONFIG = "config.example.yaml"
"""The example config at the top of a checkout."""


def default_config() -> str:
    """`config.yaml` in the current folder (a `yonglink init` project), else `config.example.yaml` (a
    checkout); `--config` always wins."""
    return PROJECT_CONFIG if Path(PROJECT_CONFIG).is_file() else EXAMPLE_CONFIG


def default_route_tests() -> str:
    """`mappings/tests` (a checkout) or `routes/tests` (a `yonglink init` project) in the current folder,
    else the route tests shipped with yonglink."""
    for candidate in ("mappings/tests", "routes/tests"):
        if Path(candidate).is_dir():
            return candidate
    return str(ROUTE_TESTS_DIR)
