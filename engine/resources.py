"""Where the files yonglink ships are: schemas, routes, code tables, route tests, the example config.

They are package data of `yonglink_data` (see its docstring for why that package's folders are links to
the repository's top-level `schemas/` and `mappings/`), found through `importlib.resources`, so the same
paths work from a checkout, an editable install and a wheel installed outside the repository. Nothing
else in the engine builds a path from its own source location.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

DATA_PACKAGE = "yonglink_data"

# pip installs wheels unpacked, so the package's Traversable is a real directory (`pathlib.Path`): the
# engine globs, stats and reads these folders like any other, and route errors can name the files.
DATA_ROOT = Path(str(files(DATA_PACKAGE)))
"""`yonglink_data/`: in a checkout its entries are links to the top-level folders."""

SCHEMAS_DIR = DATA_ROOT / "schemas"
"""The config schema (`config.schema.json`, `config/`) and the dataset schemas (`ningbo/`)."""
DATASET_SCHEMAS_DIR = SCHEMAS_DIR / "ningbo"
"""Dataset schemas used when the config names none (`engine.schemas`)."""
MAPPINGS_DIR = DATA_ROOT / "mappings"
"""The shipped routes (`*.yaml`)."""
TABLES_DIR = MAPPINGS_DIR / "tables"
"""Code tables used when the config names none (`engine.tables`)."""
ROUTE_TESTS_DIR = MAPPINGS_DIR / "tests"
"""Route tests of the shipped routes (run by `yonglink test` where no tests folder is at hand)."""
EXAMPLE_CONFIG = DATA_ROOT / "config.example.yaml"
"""The example configuration (`yonglink init` starts from the same choices)."""

SOURCE_ROOT = MAPPINGS_DIR.resolve().parent
"""The folder whose `mappings/` is the shipped one (the repository root in a checkout): shipped route
and test files are named relative to it in errors (`mappings/adt_person.yaml:12`), wherever installed."""
