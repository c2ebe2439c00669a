"""FHIRPath evaluation (fhirpathpy) with compiled expressions cached and syntax errors reported.

fhirpathpy's own ``compile`` accepts malformed expressions silently (its ANTLR error listener does
nothing), so `compile_fhirpath` first parses with a listener that raises `PathSyntaxError` naming the
column and the parser's complaint. Compiled expressions are cached per (expression, release).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from engine.errors import PathSyntaxError

MODELS = {"R4B": "r4", "R4": "r4", "R5": "r5"}
"""fhirpathpy type models per release (fhirpathpy has no R4B model; R4's choice types match)."""

Compiled = Callable[..., list[Any]]


class _Raise(ErrorListener):  # type: ignore[misc]
    """ANTLR listener that turns the first syntax error into `PathSyntaxError`."""

    def __init__(self, expr: str) -> None:
        super().__init__()
        self.expr = expr

    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int,
                    msg: str, e: Any) -> None:
        raise PathSyntaxError(f"FHIRPath {self.expr!r}: column {column + 1}: {msg}", path=self.expr)


def check_syntax(expr: str) -> None:
    """Raise `PathSyntaxError` when ``expr`` is not a complete FHIRPath expression."""
    if not expr.strip():
        raise PathSyntaxError("FHIRPath expression is empty", path=expr)
    listener = _Raise(expr)
    lexer = FHIRPathLexer(InputStream(expr))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = FHIRPathParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.expression()
    token = parser.getCurrentToken()
    if token.type != Token.EOF:
        raise PathSyntaxError(
            f"FHIRPath {expr!r}: column {token.column + 1}: unexpected {token.text!r} after a complete "
            "expression", path=expr)


@lru_cache(maxsize=2048)
def compile_fhirpath(expr: str, release: str = "R4B") -> Compiled:
    """Syntax-check and compile ``expr`` for ``release`` (cached)."""
    check_syntax(expr)
    model = models[MODELS.get(release, "r4")]
    compiled: Compiled = fhirpathpy.compile(expr, model=model)
    return compiled


def evaluate(resource: dict[str, Any], expr: str, *, release: str = "R4B") -> list[Any]:
    """Evaluate ``expr`` on FHIR JSON data ``resource`` (a resource or any element) -> result list."""
    fn = compile_fhirpath(expr, release)
    try:
        return list(fn(resource, {}))
    except PathSyntaxError:
        raise
    except Exception as exc:  # fhirpathpy raises bare Exceptions for bad function use at run time
        raise PathSyntaxError(f"FHIRPath {expr!r} failed: {exc}", path=expr) from None
