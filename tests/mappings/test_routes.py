"""Every route test case in mappings/tests/*.yaml, run as a pytest case (same runner as `yonglink test`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from engine.mapping import build_router
from engine.mapping.router import Router
from engine.mapping.routetest import Case, find_test_files, load_cases, routes_for, run_case

TESTS_DIR = Path(__file__).resolve().parents[2] / "mappings" / "tests"
CASES = [case for file in find_test_files([TESTS_DIR]) for case in load_cases(file)]


@cache
def router_for(routes: tuple[Path, ...]) -> Router:
    return build_router(list(routes))


def test_there_are_route_tests_for_every_shipped_route() -> None:
    """Each route file in mappings/ is exercised by at least one route test case."""
    router = router_for(tuple(routes_for(next(iter(find_test_files([TESTS_DIR]))))))
    tested = {c.route for c in CASES}
    assert {r.id for r in router.routes} <= tested


@pytest.mark.parametrize("case", CASES, ids=[f"{Path(c.file).stem}:{c.line}" for c in CASES])
def test_route_case(case: Case) -> None:
    """The route test case passes (its name says what it checks)."""
    router = router_for(tuple(routes_for(TESTS_DIR / Path(case.file).name)))
    result = run_case(router, case)
    assert result.passed, f"{case.name}\n{result.detail}"
