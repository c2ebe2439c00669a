"""Code tables: small YAML files that translate a sender's codes into national value-domain codes.

A table maps HL7 / local codes (HL7 v2.5.1 Table 0001 sex, 0002 marital status, 0078 abnormal flags,
GB/T 3304 letter codes ...) to the code a Ningbo dataset field requires (GB/T 2261.1, CV02.01.101 ...).
File format (see docs/datasets.md)::

    id: hl7_0001_to_gbt_2261_1
    description: HL7 table 0001 administrative sex → GB/T 2261.1
    source: HL7 v2.5.1 Table 0001
    target: GB/T 2261.1
    unmapped: error          # error (default) | pass | {default: "9"}
    map:
      M: "1"
      F: "2"

Keys and values of `map` are taken verbatim as text, whatever YAML would make of them: `01` stays
"01" (not 1) and `NO` stays "NO" (not false), because codes are text. Every error names file:line.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Literal

import yaml

from engine.errors import ConfigError, MappingError

Policy = Literal["error", "pass", "default"]
"""What `CodeTable.lookup` does with a code that is not in the map."""

TOP_LEVEL_KEYS = ("id", "description", "source", "target", "unmapped", "map")
MAX_CODE_IN_MESSAGE = 20
"""Unmapped codes are quoted in errors (they make the error actionable) but cut to this length, in case
a sender put free text (possibly patient data) into a coded field."""


@dataclass(frozen=True, eq=False)
class CodeTable:
    """One loaded code table; `lookup` applies it with the table's unmapped-code policy.

    Compared and hashed by identity (`eq=False`), so a table can key a cache.
    """

    id: str
    mapping: Mapping[str, str]
    policy: Policy = "error"
    default: str | None = None
    description: str = ""
    source: str = ""
    target: str = ""
    file: str | None = None

    unmapped_counts: ClassVar[Counter[str]] = Counter()
    """Unmapped lookups per table id (all policies), for the metrics layer. Keyed by table id only, never
    by the code itself: codes from the wire are unbounded and may hold free text."""

    def lookup(self, code: str | None) -> str:
        """Return the target code for `code` (None counts as ""); unmapped codes follow the policy.

        Raises MappingError (value=the code) when the code is unmapped and the policy is `error`.
        """
        key = "" if code is None else code
        hit = self.mapping.get(key)
        if hit is not None:
            return hit
        CodeTable.unmapped_counts[self.id] += 1
        if self.policy == "pass":
            return key
        if self.policy == "default" and self.default is not None:
            return self.default
        shown = key if len(key) <= MAX_CODE_IN_MESSAGE else key[:MAX_CODE_IN_MESSAGE] + "…"
        where = f" ({self.file})" if self.file else ""
        raise MappingError(f"code table {self.id}: no mapping for code {shown!r}{where}", value=key)

    def __contains__(self, code: object) -> bool:
        return code in self.mapping

    def __len__(self) -> int:
        return len(self.mapping)


def load_tables(directory: str | Path) -> dict[str, CodeTable]:
    """Load every `*.yaml` / `*.yml` table in `directory` (not recursive), keyed by table id."""
    tables: dict[str, CodeTable] = {}
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError("code table directory does not exist", file=str(root))
    for path in sorted([*root.glob("*.yaml"), *root.glob("*.yml")]):
        table = load_table(path)
        if table.id in tables:
            raise ConfigError(f"table id {table.id!r} is also defined in {tables[table.id].file}",
                              file=str(path), line=1, key="id")
        tables[table.id] = table
    return tables


def load_table(path: str | Path) -> CodeTable:
    """Load one table file; ConfigError (with file:line) for any problem in it."""
    file = str(path)
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(f"not valid YAML: {exc.problem}", file=file,
                          line=mark.line + 1 if mark else None) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read code table: {exc}", file=file) from exc
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError("a code table must be a YAML mapping", file=file,
                          line=root.start_mark.line + 1 if root else 1)
    top = _pairs(root, file)
    for key, (key_node, _) in top.items():
        if key not in TOP_LEVEL_KEYS:
            hint = difflib.get_close_matches(key, TOP_LEVEL_KEYS, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"unknown key{did}; allowed: {', '.join(TOP_LEVEL_KEYS)}",
                              file=file, line=_line(key_node), key=key)
    for required in ("id", "map"):
        if required not in top:
            raise ConfigError(f"missing required key {required!r}", file=file, line=_line(root))
    text = {k: _scalar(v, file, k) for k, (_, v) in top.items() if k not in ("map", "unmapped")}
    policy, default = _policy(top.get("unmapped"), file)
    map_node = top["map"][1]
    if not isinstance(map_node, yaml.MappingNode):
        raise ConfigError("must be a mapping of source code → target code", file=file,
                          line=_line(map_node), key="map")
    mapping = {k: _scalar(v, file, f"map.{k}") for k, (_, v) in _pairs(map_node, file, "map.").items()}
    if not mapping:
        raise ConfigError("is empty", file=file, line=_line(map_node), key="map")
    return CodeTable(id=text["id"], mapping=MappingProxyType(mapping), policy=policy, default=default,
                     description=text.get("description", "").strip(), source=text.get("source", ""),
                     target=text.get("target", ""), file=file)


def _policy(entry: tuple[yaml.Node, yaml.Node] | None, file: str) -> tuple[Policy, str | None]:
    """Parse `unmapped:` — `error` (the default), `pass`, or `{default: "<code>"}`."""
    if entry is None:
        return "error", None
    node = entry[1]
    if isinstance(node, yaml.ScalarNode) and node.value in ("error", "pass"):
        return ("error" if node.value == "error" else "pass"), None
    if isinstance(node, yaml.MappingNode):
        inner = _pairs(node, file, "unmapped.")
        if list(inner) == ["default"]:
            return "default", _scalar(inner["default"][1], file, "unmapped.default")
    raise ConfigError('must be error, pass or {default: "<code>"}', file=file, line=_line(node),
                      key="unmapped")


def _pairs(node: yaml.MappingNode, file: str, prefix: str = "") -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Key text → (key node, value node), rejecting non-scalar and duplicate keys (YAML allows neither
    silently here: a duplicated code would make the table's meaning depend on key order)."""
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise ConfigError("keys must be plain codes", file=file, line=_line(key_node), key=prefix or None)
        key = key_node.value
        if key in out:
            raise ConfigError(f"duplicate key (first at line {_line(out[key][0])})", file=file,
                              line=_line(key_node), key=f"{prefix}{key}")
        out[key] = (key_node, value_node)
    return out


def _scalar(node: yaml.Node, file: str, key: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError("must be a single text value", file=file, line=_line(node), key=key)
    return str(node.value)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


__all__ = ["CodeTable", "Policy", "load_table", "load_tables"]
