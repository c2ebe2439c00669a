"""Route files for the route-loading and route-check tests: a small valid person route and a writer."""

from __future__ import annotations

import textwrap
from pathlib import Path

PERSON_ROUTE = """\
id: r1
match:
  message_type: ADT^A01
target: person
fields:
  name: PID-5.1
  sex_code:
    path: PID-8
    transforms: [{lookup: hl7_0001_to_gbt_2261_1}]
"""
"""A valid route (ADT^A01 → person, HL7 table 0001 → GB/T 2261.1 sex code); tests edit copies of it."""


def write(tmp_path: Path, text: str, name: str = "route.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path
