"""Hypothesis profiles for the property tests: bounded and reproducible in `make test`, long in `make fuzz`.

- `ci` (default): derandomized (the same cases on every machine, so CI never flakes on a new random
  seed), no deadline (a loaded 2-core CI box is slow, not wrong), no example database (nothing written
  under tests/). Each test sets its own case count with `examples(n)` — a few thousand for the pure
  functions, fewer where each case commits to a real store.
- `fuzz` (`make fuzz`, or `YONGLINK_FUZZ=1`): random, every count x `FUZZ_FACTOR`, failing examples kept in
  `tests/fuzz/corpus/hypothesis/` and replayed first next time.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

CORPUS = Path(__file__).resolve().parent / "corpus"

settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz", derandomize=False, deadline=None, print_blob=True,
                          database=DirectoryBasedExampleDatabase(str(CORPUS / "hypothesis")),
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("fuzz" if os.environ.get("YONGLINK_FUZZ") else "ci")
