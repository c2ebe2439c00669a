"""Fixtures shared by the whole suite: configs in a temp dir and a running engine."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from engine.config import Config, parse_config
from engine.runtime import Engine


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Config]:
    """Build a Config from YAML text written as if it were `tmp_path/config.yaml` (store in tmp_path)."""

    def make(text: str) -> Config:
        file = tmp_path / "config.yaml"
        file.write_text(textwrap.dedent(text), encoding="utf-8")
        return parse_config(file.read_text(encoding="utf-8"), file=file)

    return make


@pytest.fixture
async def engine_factory() -> AsyncIterator[Callable[[Config], object]]:
    """Start engines for a test and stop every one of them afterwards."""
    started: list[Engine] = []

    async def start(config: Config) -> Engine:
        engine = Engine(config)
        await engine.start()
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        await engine.stop()
