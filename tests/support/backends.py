"""Store backends in tests: `SQLITE_ONLY` for a test of a `both_backends` module that cannot run on
PostgreSQL (say why beside it), e.g. a CLI command that reads the SQLite file named in the config."""

from __future__ import annotations

import pytest

SQLITE_ONLY = pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
