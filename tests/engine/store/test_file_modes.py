"""Files that hold raw messages (patient data) are not readable by other users, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import delivery_support as S
import pytest

from engine.config import Config
from engine.runtime import Engine
from engine.store.sqlite import SqliteStore


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: every mode below is what the code asked for, nothing masked off."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_sqlite_database_and_its_wal_and_shm_are_created_0600(tmp_path: Path,
                                                                          open_umask: None) -> None:
    store = SqliteStore(tmp_path / "e.db")
    await store.open()
    try:
        await store.write(lambda c: c.execute("INSERT INTO engine_meta VALUES ('k', 'v')"))
        files = [tmp_path / name for name in ("e.db", "e.db-wal", "e.db-shm")]
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        await store.close()


async def test_a_database_an_older_version_left_0644_is_tightened_to_0600(tmp_path: Path,
                                                                            open_umask: None) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    store = SqliteStore(path)
    await store.open()
    await store.close()
    assert mode(path) == 0o600


async def test_file_destination_files_are_0640(tmp_path: Path, open_umask: None,
                                               make_config: Callable[[str], Config],
                                               engine_factory: Callable[[Config], Any]) -> None:
    out = tmp_path / "outbox"
    engine: Engine = await engine_factory(make_config(f"""
engine:
  store: {{path: var/e.db}}
  admin: {{enabled: false}}
destinations:
  - name: outbox
    type: file
    file: {{dir: "{out}"}}
"""))
    await S.inject(engine, records=[{"patient_id": "p1"}], destinations=("outbox",))
    files = await S.wait_for(lambda: [p for p in out.rglob("*.json")])
    assert [oct(mode(f)) for f in files] == ["0o640"]
