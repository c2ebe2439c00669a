"""The fast validity check agrees with jsonschema (the authority) on every shipped dataset schema."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.datasets.registry import DatasetRegistry

ROOT = Path(__file__).resolve().parents[3]
REGISTRY = DatasetRegistry.load(ROOT / "schemas" / "ningbo")
RECORDS = ROOT / "tests" / "samples" / "records"


def mutations(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The record itself, then one change at a time: delete, mistype, overlong, odd code, extra key."""
    yield record
    for key, value in record.items():
        for bad in (None, 12345, ["x"], "x" * 300, "?", "", "1999-13-45"):
            changed = copy.deepcopy(record)
            changed[key] = bad
            yield changed
        dropped = copy.deepcopy(record)
        del dropped[key]
        yield dropped
        if isinstance(value, dict):
            for inner in value:
                nested = copy.deepcopy(record)
                nested[key][inner] = 7
                yield nested
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner in value[0]:
                row = copy.deepcopy(record)
                row[key][0][inner] = ["not", "a", "value"]
                yield row
    extra = copy.deepcopy(record)
    extra["no_such_field"] = "x"
    yield extra


@pytest.mark.parametrize("dataset", REGISTRY.datasets())
def test_fast_check_and_jsonschema_agree_on_every_mutation_of_the_example(dataset: str) -> None:
    ds = REGISTRY.get(dataset)
    assert ds.fast is not None and ds.de_fast is not None, "every shipped schema should have a fast path"
    record = json.loads((RECORDS / f"{dataset}.json").read_text(encoding="utf-8"))
    checked = invalid = 0
    for candidate in mutations(record):
        authority = not list(ds.validator.iter_errors(candidate))
        assert ds.fast(candidate) == authority, candidate
        de_record = REGISTRY.to_de_keys(dataset, candidate) if isinstance(candidate, dict) else candidate
        assert ds.de_fast(de_record) == (not list(ds.de_validator.iter_errors(de_record)))
        checked += 1
        invalid += not authority
    assert invalid > 0 and checked > invalid  # the mutations really exercised both verdicts


def test_an_invalid_record_still_gets_jsonschema_explanations() -> None:
    record = json.loads((RECORDS / "person.json").read_text(encoding="utf-8"))
    record["birth_date"] = "19851345"
    issues = REGISTRY.validate("person", record)
    assert [i.path for i in issues] == ["/birth_date"]
