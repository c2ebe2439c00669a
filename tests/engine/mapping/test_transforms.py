"""Field transforms: plain callables and configurable classes, as compiled from route YAML."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ConfigError, MappingError
from engine.hl7v2.er7 import Er7Message
from engine.mapping import paths
from engine.mapping.code_tables import CodeTable
from engine.mapping.expr import compile_condition
from engine.mapping.transforms import CompileEnv, Truncated, compile_transform

SEX = CodeTable(id="sex", mapping={"M": "1", "F": "2"}, policy="error")
FLAGS = CodeTable(id="flags", mapping={"": "1", "H": "2"}, policy="error")
MSG = Er7Message.parse("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301||ADT^A04|C1|P|2.5.1\rPV1|1|O")


def env(unmapped: list[str] | None = None) -> CompileEnv:
    return CompileEnv(tables={"sex": SEX, "flags": FLAGS}, name="r.f",
                      on_unmapped=(unmapped.append if unmapped is not None else (lambda t: None)),
                      compile_condition=lambda t: compile_condition(t, lambda p: paths.getter("hl7v2", p)))


def apply(spec: Any, value: Any, e: CompileEnv | None = None) -> Any:
    out = compile_transform(spec, e or env())(value, MSG)
    return out.value if isinstance(out, Truncated) else out  # the mapper unwraps it, noting the cut


@pytest.mark.parametrize(("spec", "value", "expected"), [
    ("trim", "  a ", "a"), ("trim", "   ", None), ("upper", "ha", "HA"), ("lower", "HA", "ha"),
    ("first", [None, "", "b", "c"], "b"), ("concat", ["王", None, "建国"], "王建国"),
    ({"concat": {"sep": "-"}}, ["Z1", "1"], "Z1-1"), ({"split": {"sep": "-", "index": 2}}, "a-b", "b"),
    ({"split": ","}, "a,b", ["a", "b"]), ({"default": "9"}, None, "9"), ({"default": "9"}, "1", "1"),
    ({"const": "01"}, "x", "01"), ({"replace": {"old": " ", "new": ""}}, "张  晋", "张晋"),
    ({"truncate": 3}, "abcdef", "abc"), ("date", "20240301101523", "20240301"),
    ("datetime", "202403011015", "20240301T101500"), ({"regex": r"^(\d+)"}, "12ab", "12"),
    ({"regex": "x"}, "abc", None), ("number", "11.8", 11.8), ("number", "132", 132),
    ({"number": {"on_invalid": "null"}}, ">10", None), ({"lookup": "sex"}, "F", "2"),
    ({"lookup": "sex"}, None, None), ({"lookup": {"table": "flags", "on_empty": "lookup"}}, None, "1"),
    ({"map": {"values": {"BOOKED": "1"}, "unmapped": {"default": "9"}}}, "X", "9"),
    ({"map": {"values": {"BOOKED": "1"}, "unmapped": "pass"}}, "X", "X"),
    ("resident_id", "33020619881111045x", "33020619881111045X"),
    ({"resident_id": {"derive": "birth_date"}}, "330203198503120171", "19850312"),
    ({"resident_id": {"derive": "sex"}}, "330203198503120171", "1"),
    ({"resident_id": {"on_invalid": "null"}}, "330203198503120172", None),
    ({"when": "PV1-2 == 'O'"}, "x", "x"), ({"when": "PV1-2 == 'I'"}, "x", None),
    ({"when": "value =~ '^A'"}, "Abc", "Abc"),
])
def test_transforms_do_what_docs_mapping_md_says(spec: Any, value: Any, expected: Any) -> None:
    """Each transform's documented behaviour, including how it treats absent values."""
    assert apply(spec, value) == expected


@pytest.mark.parametrize(("spec", "value", "message"), [
    ("required", None, "is required"), ({"required": "need it"}, "", "need it"),
    ("date", "19851345", "is not a valid date"), ("number", "abc", "is not a number"),
    ({"number": {"type": "integer"}}, "1.5", "whole number"),
    ({"lookup": "sex"}, "X", "no mapping in code table sex"),
    ({"regex": {"pattern": "^\\d+$", "on_mismatch": "error"}}, "x", "does not match"),
    ("resident_id", "330203198503120172", "wrong check character"),
])
def test_transform_failures_are_mapping_errors(spec: Any, value: Any, message: str) -> None:
    """A value the transform cannot accept raises MappingError with a predicate message."""
    with pytest.raises(MappingError, match=message):
        apply(spec, value)


def test_an_unmapped_code_is_reported_for_metrics_whatever_the_policy() -> None:
    """The on_unmapped hook (metrics.unmapped_codes) sees the table id for pass/default policies too."""
    seen: list[str] = []
    e = env(seen)
    apply({"map": {"values": {"A": "1"}, "unmapped": "pass"}}, "B", e)
    with pytest.raises(MappingError):
        apply({"lookup": "sex"}, "Q", e)
    assert seen == ["inline:r.f", "sex"]


@pytest.mark.parametrize(("spec", "message"), [
    ("trimm", "did you mean 'trim'"), ({"lookup": "sexx"}, "did you mean 'sex'"),
    ({"trim": 1}, "no settings"),
    ({"split": {"sep": ",", "idx": 1}}, "did you mean 'index'"), ({"regex": "("}, "bad pattern"),
    ({"map": {"values": {1: "x"}}}, "quote codes"), ({"truncate": 0}, "positive"),
    ({"when": "PID-8 = 'x'"}, "expected"), ({"a": 1, "b": 2}, "one-key mapping"),
])
def test_bad_transform_specs_are_config_errors(spec: Any, message: str) -> None:
    """Unknown names, settings and bad arguments are caught at load time with a hint."""
    with pytest.raises(ConfigError, match=message):
        compile_transform(spec, env())
