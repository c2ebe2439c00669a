"""Ids are unique, URL-safe and sort by creation time."""

from __future__ import annotations

import re

from engine.ids import new_id


def test_ids_are_unique_hex_and_sort_by_time() -> None:
    ids = [new_id(1_700_000_000.0 + i) for i in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{28}", i) for i in ids)
    assert ids == sorted(ids)


def test_ids_made_in_the_same_millisecond_differ() -> None:
    assert len({new_id(1_700_000_000.0) for _ in range(1000)}) == 1000


def test_ids_of_two_processes_differ_even_in_the_same_millisecond() -> None:
    """The 64 low bits are a per-process random prefix and a counter: another process (the engine and a
    CLI command writing one store) draws another prefix."""
    import subprocess
    import sys

    code = "from engine.ids import new_id; print(new_id(1_700_000_000.0))"
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    other = run.stdout.strip()
    mine = new_id(1_700_000_000.0)
    assert other[:12] == mine[:12] and other[12:20] != mine[12:20]
