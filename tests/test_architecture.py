"""The shape of the code: no import cycles between packages, no attribute probing of our own types.

Both checks read the source with `ast` (nothing is imported). A "room" is a package below `engine/` or
`channels/` (`engine.delivery`, `channels.mllp`, ...) or a module at the top of either
(`engine.runtime`, `engine.types`, `channels.base`, the `channels` package's own `__init__`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_PACKAGES = ("engine", "channels")

DEFERRED_EDGES_ALLOWED = {
    ("engine.message_view", "engine.hl7v2"):
        "`open_source` (a parsing shortcut used by tests) imports the HL7 v2 view inside the function; "
        "the views themselves import only the `Source` protocol from message_view",
    ("engine.message_view", "engine.fhir"):
        "same `open_source` shortcut, for the FHIR view",
}
"""Imports inside a function that close a cycle, each with why it is tolerated. Module-level imports
get no such exception."""

PROBES_ALLOWED = {
    ("engine/config.py", "exc"):
        "PyYAML's MarkedYAMLError: `problem_mark` and `problem` are optional on its subclasses",
    ("channels/payload.py", "resource"): "fhir.resources models (third-party): only a Bundle has `entry`",
    ("engine/store/sqlite.py", "exc"): "sqlite3.Error (stdlib): `sqlite_errorcode` is set only on errors "
                                       "SQLite raised, not on ones constructed in code",
    ("engine/store/sqlite.py", "self._local"): "threading.local: the per-thread connection may not exist yet",
    ("engine/logs.py", "stream"): "any text stream (stdlib): not every one has `isatty`",
    ("engine/commands/messages.py", "args"): "argparse.Namespace: filter flags looked up by name",
    ("engine/commands/dlq.py", "args"): "argparse.Namespace: filter flags looked up by name",
}
"""`getattr`/`hasattr` calls outside our own types, as (file, probed expression): reason."""


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module under engine/ and channels/."""
    for top in TOP_PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join(parts), path


def room(module: str) -> str:
    """The room a module belongs to: its sub-package (`engine.delivery.worker` → `engine.delivery`), or
    itself when it sits at the top (`engine.runtime`, `channels`)."""
    return ".".join(module.split(".")[:2])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, bool]]:
    """(imported module, deferred) for each import that runs: at module level or inside a function
    (deferred), never those under `if TYPE_CHECKING:`."""
    is_package = path.name == "__init__.py"

    def walk(nodes: list[ast.stmt], deferred: bool) -> Iterator[tuple[str, bool]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.orelse, deferred)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, deferred
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = module.split(".")[: None if is_package else -1]
                    base = base[: len(base) - node.level + 1]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                yield target, deferred
                for alias in node.names:  # `from engine.store import messages` imports a module
                    if f"{target}.{alias.name}" in known:
                        yield f"{target}.{alias.name}", deferred
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)  # ast nodes: fields vary by node type
                    if isinstance(children, list):
                        yield from walk([c for c in children if isinstance(c, ast.stmt)], deferred)
                        for handler in children:
                            if isinstance(handler, ast.ExceptHandler):
                                yield from walk(handler.body, deferred)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")).body, False)


def room_graph() -> dict[str, dict[str, list[str]]]:
    """room → room it imports → the module imports that make the edge (allowed deferred ones left out)."""
    found = dict(modules())
    known = set(found)
    graph: dict[str, dict[str, list[str]]] = {}
    for module, path in found.items():
        for target, deferred in imports(module, path, known):
            if target.split(".")[0] not in TOP_PACKAGES or target not in known:
                continue
            a, b = room(module), room(target)
            if a == b or (deferred and (a, b) in DEFERRED_EDGES_ALLOWED):
                continue
            graph.setdefault(a, {}).setdefault(b, []).append(f"{module} -> {target}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected groups of more than one room (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_room_imports_a_room_that_imports_it_back() -> None:
    """Packages form a layered graph: each cycle is listed with the imports that close it."""
    graph = room_graph()
    problems = []
    for group in cycles(graph):
        edges = [f"  {a} -> {b}: {', '.join(graph[a][b][:2])}" for a in group for b in graph.get(a, {})
                 if b in group]
        problems.append(f"cycle {' / '.join(group)}:\n" + "\n".join(edges))
    assert not problems, "\n".join(problems)


def test_the_cycle_check_sees_a_cycle() -> None:
    """The check itself: a graph with a -> b -> c -> a is one cycle, a DAG none."""
    assert cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": [], "c": []}, "b": {"c": []}}) == []


def probes() -> Iterator[tuple[str, str, int]]:
    """(file, probed expression, line) of each `getattr(...)`/`hasattr(...)` in engine/ and channels/."""
    for _, path in modules():
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args):
                yield rel, ast.unparse(node.args[0]), node.lineno


def test_no_getattr_or_hasattr_on_our_own_types() -> None:
    """Our types declare what they have (mypy --strict checks it); probing by name is only for objects
    we do not own, each listed in PROBES_ALLOWED with its reason."""
    found = [f"{file}:{line}: probes {what}" for file, what, line in probes()
             if (file, what) not in PROBES_ALLOWED]
    assert not found, "\n".join(found)


def test_every_allowed_probe_still_exists() -> None:
    """An allow-list entry whose probe was removed goes too, so the list never outlives its reasons."""
    present = {(file, what) for file, what, _ in probes()}
    stale = sorted(set(PROBES_ALLOWED) - present)
    assert not stale, stale
