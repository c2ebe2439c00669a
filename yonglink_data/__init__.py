"""The files yonglink ships beside its code, found through `importlib.resources` (engine/resources.py).

    schemas/              config schema and the Ningbo dataset schemas
    mappings/             the shipped routes, code tables (tables/) and route tests (tests/)
    tests/samples/        the sample messages those route tests read
    config.example.yaml   the example configuration

In the repository these names are symbolic links to the top-level folders, which stay the one source of
truth (everyone edits `schemas/` and `mappings/` where they always were). Why links and not a setuptools
`package-dir` mapping: one lookup, `importlib.resources.files("yonglink_data")`, then finds the same
files in all three ways the code runs —
- from a checkout with `PYTHONPATH=.` (how the tests run): this folder is imported in place;
- from an editable install (`make run`): setuptools' editable finder maps `yonglink_data` to this folder;
- from a wheel installed anywhere: building the wheel follows the links and copies the files in, so
  `site-packages/yonglink_data/` holds real copies.
A `package-dir` mapping works for the wheel and the editable install, but not for `PYTHONPATH=.` runs,
where the name would resolve to whatever other checkout the virtualenv was installed from.
The project is POSIX-only (the one-engine store lock uses `fcntl.flock`), so git keeps the links.
"""
