"""Transform option values checked against their allowed sets before a transform is compiled.

The transforms in `engine.mapping.transforms` read option values such as ``on_invalid`` by comparing
with one word (``s.get("on_invalid", "error") == "null"``), so a misspelt value (``on_invalid: nul``)
or YAML's own null (``on_invalid: null`` parses to ``None``, not the text ``"null"``) used to fall
silently to the default. The route loader calls `normalise` on every transform spec: YAML null becomes
the word ``null`` where ``null`` is an allowed value, and any other value outside its set is a
`ConfigError` with a "did you mean" hint. docs/mapping.md lists the same sets.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from engine.errors import ConfigError

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("number", "type"): ("number", "integer"),
    ("number", "on_invalid"): ("error", "null"),
    ("resident_id", "derive"): ("id", "birth_date", "sex"),
    ("resident_id", "on_invalid"): ("error", "null"),
    ("date", "timezone"): ("beijing", "keep"),
    ("datetime", "timezone"): ("beijing", "keep"),
    ("regex", "on_mismatch"): ("null", "error"),
    ("lookup", "on_empty"): ("skip", "lookup"),
    ("map", "on_empty"): ("skip", "lookup"),
}
"""(transform, option) → the values it accepts; the first is the default."""


def normalise(spec: Any) -> Any:
    """The transform spec with option values checked (YAML null → ``"null"`` where allowed)."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        return spec
    name, settings = next(iter(spec.items()))
    if not isinstance(settings, Mapping):
        return spec
    fixed = dict(settings)
    for key, value in settings.items():
        allowed = CHOICES.get((str(name), str(key)))
        if allowed is None:
            continue
        if value is None and "null" in allowed:
            fixed[key] = "null"
            continue
        if isinstance(value, str) and value in allowed:
            continue
        shown = "null (YAML null)" if value is None else repr(value)
        close = difflib.get_close_matches(str(value), allowed, n=1) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{name}: {key} must be one of {', '.join(allowed)}, got {shown}{hint}")
    return {name: fixed}
