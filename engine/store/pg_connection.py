"""The `Connection` the PostgreSQL store passes its ops: rooms' SQL (written with `?` placeholders, the
portable subset plus a few SQLite spellings) run through psycopg 3.

What is rewritten, outside string literals and quoted identifiers, and why each is the same meaning:
- `?` → `%s` (psycopg's placeholder); a literal `%` → `%%` (psycopg reads `%` as a placeholder start).
- `instr(a, b)` → `strpos(a, b)`: both the 1-based position of `b` in `a`, 0 when absent.
- `IS ?` / `IS NOT ?` (SQLite's null-safe equality) → `IS NOT DISTINCT FROM %s` / `IS DISTINCT FROM %s`.

One parameter rule: PostgreSQL's `text` cannot hold NUL (SQLite's can), and a header field with a NUL
(MSH-4, MSH-10 of hostile input) would fail its whole commit, so the sender would retry it forever. A NUL in
a `str` parameter is stored as U+FFFD; `bytes` (raw messages, payloads: `bytea`) are kept exactly.

Anything else that differs (types of `VALUES` columns, integer casts, JSON functions, `total_changes`) is
not guessed at here: the room branches on `Store.dialect` / `connection.dialect_of` (see the rooms).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from engine.store.connection import Dialect, Params

if TYPE_CHECKING:
    import psycopg

_TOKEN = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|\bIS\s+NOT\s+\?|\bIS\s+\?|\binstr\s*\(|\?|%""",
                    re.IGNORECASE)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """`sql` as psycopg takes it (see the module docstring); cached: rooms reuse a few hundred texts."""

    def one(match: re.Match[str]) -> str:
        token = match[0]
        if token[0] in "'\"":
            return token.replace("%", "%%")
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        upper = token.upper()
        if upper.startswith("INSTR"):
            return "strpos("
        if "NOT" in upper:
            return "IS DISTINCT FROM %s"
        return "IS NOT DISTINCT FROM %s"

    return _TOKEN.sub(one, sql)


class PgConnection:
    """A psycopg connection with the `Connection` shape (execute, executemany) and `dialect`."""

    dialect = Dialect.POSTGRES

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Params = (), /) -> psycopg.Cursor[Any]:
        return self.raw.execute(translate(sql), _params(parameters))

    def executemany(self, sql: str, parameters: Iterable[Params], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(translate(sql), [_params(p) for p in parameters])
        return cur


NUL, REPLACEMENT = "\x00", "\ufffd"


def _params(parameters: Params) -> Any:
    if isinstance(parameters, dict):
        raise TypeError("named parameters are not supported by the PostgreSQL adapter; use ?")
    return [p.replace(NUL, REPLACEMENT) if type(p) is str and NUL in p else p for p in parameters]
