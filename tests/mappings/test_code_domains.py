"""Codes that are right, not just valid: every code table a shipped route uses yields only codes of the
value domain of the field it fills (schemas/ningbo), and every table says where it comes from.

The check walks the compiled routes, so a shared table (mappings/tables/) and an inline ``map:`` are
held to the same rule, through whatever transform uses them (``lookup``, ``map``, ``by_system``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.datasets.registry import FieldInfo
from engine.mapping import build_router
from engine.mapping.code_tables import CodeTable, load_tables
from engine.mapping.coding import BySystem
from engine.mapping.model import FieldMap, Route
from engine.mapping.transforms import Lookup

REPO = Path(__file__).resolve().parents[2]
ROUTES = sorted((REPO / "mappings").glob("*.yaml"))
STANDARD = re.compile(r"Table \d{4}|GB/T \d+|CV\d{2}\.\d{2}\.\d{3}|WS/T? \d+|2\.16\.156\.10011|法定传染病")
"""How a table's `source:` names its standard and table (HL7 Table 0001, GB/T 3304, CV02.01.101 ...)."""
DISPLAY_TEXT = ("dept_name", "ward_name", "diagnosis_name", "admission_diagnosis_name",
                "discharge_diagnosis_name", "item_name", "result_text", "title", "vaccine_name", "org_name",
                "note")
"""Display texts: cut at their field's limit (and counted) instead of failing the record."""


def tables_in(step: Any) -> Iterator[CodeTable]:
    if isinstance(step, Lookup):
        yield step.table
    elif isinstance(step, BySystem):
        for inner in step.steps.values():
            yield from tables_in(inner)


def coded_fields(route: Route) -> Iterator[tuple[str, FieldMap, FieldInfo]]:
    """(dotted name, field map, schema field) of every dataset field of a route, row fields too."""
    assert route.dataset is not None
    fields = route.dataset.fields
    for fm in route.fields:
        yield fm.name, fm, fields[fm.name]
    for each in route.each:
        rows = fields[each.name].items or {}
        for fm in each.fields:
            yield f"{each.name}[].{fm.name}", fm, rows[fm.name]


def allowed(value: str, info: FieldInfo) -> bool:
    if info.enum is not None and value not in info.enum:
        return False
    if info.pattern is not None and not re.search(info.pattern, value):
        return False
    return info.max_length is None or len(value) <= info.max_length


def cases() -> list[tuple[str, str, CodeTable, FieldInfo]]:
    router = build_router(ROUTES)
    out = []
    for route in router.routes:
        if route.dataset is None:
            continue
        for name, fm, info in coded_fields(route):
            for step in fm.steps:
                out += [(route.id, name, table, info) for table in tables_in(step)]
    return out


CASES = cases()


def test_the_walk_finds_the_shared_and_inline_tables() -> None:
    """Guard against a vacuous check: most shipped tables and some inline maps are reached."""
    ids = {table.id for _, _, table, _ in CASES}
    assert {"hl7_0023_to_admission_route", "hl7_0270_to_wst_500_document", "cvx_to_national_vaccine",
            "hl7_0396_to_item_code_system", "hl7_0001_to_gbt_2261_1"} <= ids
    assert any(i.startswith("inline:") for i in ids)


@pytest.mark.parametrize(("route", "field", "table", "info"), CASES,
                         ids=[f"{r}.{f}:{t.id}" for r, f, t, _ in CASES])
def test_a_table_yields_only_codes_of_the_fields_value_domain(
        route: str, field: str, table: CodeTable, info: FieldInfo) -> None:
    """Every target code (and the unmapped default) is allowed by the field's enum / pattern / length."""
    values = set(table.mapping.values()) | ({table.default} if table.default is not None else set())
    bad = sorted(v for v in values if not allowed(v, info))
    assert bad == [], f"{table.id} gives {bad} for {route}.{field} ({info.cv or info.format})"


def test_every_shipped_table_cites_its_standard_and_table() -> None:
    """`source:` names the standard and table behind the codes (HL7 Table 0023, GB/T 2261.1 ...)."""
    tables = load_tables(REPO / "mappings" / "tables")
    uncited = sorted(t.id for t in tables.values() if not STANDARD.search(f"{t.source} {t.description}"))
    assert uncited == []


def test_every_inline_map_in_a_route_cites_its_source_in_a_comment() -> None:
    """An inline `map:` code table carries a `#` comment on its line or the three lines above it."""
    missing = []
    for path in ROUTES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.search(r"(^|[\s{-])map:", line.split("#")[0]):
                if not any("#" in lines[j] for j in range(max(0, i - 3), i + 1)):
                    missing.append(f"{path.name}:{i + 1}")
    assert missing == []


def test_display_texts_are_cut_at_their_fields_limit() -> None:
    """A display text (item, diagnosis, department name ...) ends with `truncate` at exactly the
    schema's maxLength, so a long name is cut and counted instead of failing the record."""
    router = build_router(ROUTES)
    wrong = []
    for route in router.routes:
        if route.dataset is None:
            continue
        for name, fm, info in coded_fields(route):
            if name.rsplit(".", 1)[-1] not in DISPLAY_TEXT or fm.source_text == "const":
                continue
            cuts = [getattr(step, "n", None) for step in fm.steps if type(step).__name__ == "Truncate"]
            if cuts != [info.max_length]:
                wrong.append(f"{route.id}.{name}: truncate {cuts} vs maxLength {info.max_length}")
    assert wrong == []
