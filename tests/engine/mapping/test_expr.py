"""The condition language of `match.when`, `filter` and the `when` transform."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.hl7v2.er7 import Er7Message
from engine.mapping import paths
from engine.mapping.expr import compile_condition

MSG = Er7Message.parse("MSH|^~\\&|HIS|NBDYYY|EMPI|NBWJW|20240301||ADT^A04|C1|P|2.5.1\r"
                       "PID|1||P001^^^NBDYYY^PI~330203198503120171^^^CHN^NNCHN||王^建国||19850312|M\r"
                       "PV1|1|O")


def cond(text: str, value: object = None) -> bool:
    return compile_condition(text, lambda p: paths.getter("hl7v2", p))(MSG, value)


@pytest.mark.parametrize(("text", "expected"), [
    ("PID-8 == 'M'", True), ("PID-8 != 'M'", False), ("PV1-2 in ['O', 'E']", True),
    ("PID-3[CX.5=NNCHN].1 exists", True), ("PID-29 empty", True), ("PID-29", False), ("PID-7", True),
    ("PID-7 =~ '^1985'", True), ("not PID-8 == 'F' and PV1-2 == 'O'", True),
    ("PID-8 == 'F' or (PV1-2 == 'O' and PID-7 exists)", True), ("header.message_type == 'ADT^A04'", True),
    ("value == 'x'", False), ("\"M\" == PID-8", True),
])
def test_conditions_evaluate_against_the_message(text: str, expected: bool) -> None:
    """Each operator, keyword and operand kind evaluates as documented in engine/mapping/expr.py."""
    assert cond(text) is expected


def test_value_refers_to_the_field_being_transformed() -> None:
    """`value` is the current field value (for the `when` transform)."""
    assert cond("value == 'x'", "x")


@pytest.mark.parametrize(("text", "problem"), [
    ("PID-8 = 'M'", "column 7"), ("PID-8 == ", "end"), ("(PID-8 == 'M'", "')'"),
    ("PID-8 in 'M'", "a list"), ("PID-8 == 'M", "unterminated"), ("PID-5..1 exists", "column 7"),
    ("PID-8 =~ '('", "regular expression"), ("", "non-empty"),
])
def test_malformed_conditions_are_config_errors_naming_the_problem(text: str, problem: str) -> None:
    """A bad condition fails at load time with the column or what was expected."""
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        compile_condition(text, lambda p: paths.getter("hl7v2", p))


def test_fhirpath_operands_may_contain_spaces_inside_parentheses() -> None:
    """`where(system = 'x')` stays one operand; a FHIRPath boolean false is false."""
    from engine.fhir.source import FhirSource

    src = FhirSource({"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]})
    get = lambda p: paths.getter("fhir", p)  # noqa: E731
    assert compile_condition("Patient.identifier.where(system = 'urn:x').value == '1'", get)(src, None)
    assert not compile_condition("Patient.identifier.where(system = 'urn:y').exists()", get)(src, None)
