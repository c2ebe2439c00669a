"""`yonglink test [PATHS]`: run route tests (mappings/tests/*.yaml, routes/tests/*.yaml) without a server.

Prints one PASS/FAIL line per case, with the reason (a diff for record mismatches) under each failure;
exit 1 when any case fails or a test/route file is invalid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from engine.commands import default_route_tests


def register(sub: Any) -> None:
    p = sub.add_parser("test", help="run route tests (input message → expected record or error)")
    p.add_argument("paths", nargs="*", default=[default_route_tests()],
                   help="test files or directories (default: mappings/tests or routes/tests here, else the"
                        " shipped route tests)")
    p.add_argument("--routes", nargs="*", help="route files to test (default: *.yaml beside the tests dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import ConfigError
    from engine.mapping import build_router
    from engine.mapping.router import Router
    from engine.mapping.routetest import find_test_files, load_cases, routes_for, run_case

    routers: dict[tuple[str, ...], Router] = {}
    passed = failed = 0
    files = find_test_files(args.paths)
    if not files:
        print(f"no route test files in {' '.join(args.paths)}", file=sys.stderr)
        return 1
    for file in files:
        try:
            chosen = sorted(args.routes) if args.routes else routes_for(file)
            route_files = tuple(map(str, chosen))
            if route_files not in routers:
                routers[route_files] = build_router(list(map(Path, route_files)))
            cases = load_cases(file)
        except ConfigError as exc:
            print(f"ERROR {exc}")
            failed += 1
            continue
        for case in cases:
            result = run_case(routers[route_files], case)
            if result.passed:
                passed += 1
                if not args.quiet:
                    print(f"PASS {case.file}:{case.line} {case.name}")
            else:
                failed += 1
                print(f"FAIL {case.file}:{case.line} {case.name}")
                for line in result.detail.splitlines():
                    print(f"     {line}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
