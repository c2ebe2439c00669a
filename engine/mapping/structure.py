"""`validate: structure` in a route: HL7 v2 message-structure and datatype validation by hl7apy.

hl7apy builds the whole message tree for the declared version (HL7 v2.5.1 message structures, Table
0354, and datatype lengths), so it is ~400x slower than the lazy reader: a route opts in only where a
sender's structure must be enforced. The first problem hl7apy reports becomes the route's error.
"""

from __future__ import annotations

import warnings

MAX_REASON = 200
"""hl7apy reasons can quote a whole value; cut them to this many characters."""


def structure_problem(text: str) -> str | None:
    """None when `text` is a structurally valid message for its MSH-12 version, else hl7apy's reason."""
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    er7 = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # hl7apy emits DeprecationWarnings of its own
            message = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
            message.validate()
    except HL7apyException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "…"
    except (ValueError, KeyError, IndexError, AttributeError) as exc:  # hl7apy on odd input
        return f"hl7apy could not read the message ({type(exc).__name__})"
    return None
