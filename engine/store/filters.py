"""WHERE clauses built from optional filters, for the paged, newest-first listings of the admin API."""

from __future__ import annotations

from typing import Any


class Filters:
    """Collects `column op ?` terms for the values that are set; `page()` adds the cursor and limit."""

    def __init__(self) -> None:
        self.terms: list[str] = []
        self.args: list[Any] = []

    def add(self, term: str, value: Any) -> Filters:
        """Add `term` (with one `?`) when `value` is not None."""
        if value is not None:
            self.terms.append(term)
            self.args.append(value)
        return self

    def equal(self, **columns: Any) -> Filters:
        """`column = ?` for each set keyword."""
        for column, value in columns.items():
            self.add(f"{column} = ?", value)
        return self

    def page(self, select: str, table: str, *, before: str | None, limit: int,
             max_limit: int) -> tuple[str, list[Any]]:
        """The full query: newest first by `seq`, rows older than the id `before`, at most `limit`."""
        self.add(f"seq < (SELECT seq FROM {table} WHERE id = ?)", before)
        sql = f"SELECT {select} FROM {table}"
        if self.terms:
            sql += " WHERE " + " AND ".join(self.terms)
        return sql + " ORDER BY seq DESC LIMIT ?", [*self.args, max(1, min(limit, max_limit))]
