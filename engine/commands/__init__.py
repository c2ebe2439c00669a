"""Subcommands of the `yonglink` CLI (see engine/cli.py)."""
