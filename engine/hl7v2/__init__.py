"""HL7 v2 support: a lazy ER7 reader, paths, batches, character sets and acknowledgments.

Modules: `er7` (parse + read), `segment`, `path` (compiled paths), `encoding` (separators, escapes),
`charset` (MSH-18, accepted text encodings), `lines` (segment terminators), `batch` (FHS/BHS),
`header` (the MSH of a received message, read fast and checked), `inbound` (the rules every inbound
channel applies: charset, batch, dedupe key, content identity, rejections), `ack` (ACK building /
reading).
"""

from __future__ import annotations

from engine.hl7v2.er7 import Er7Message, Repetition, Segment

__all__ = ["Er7Message", "Repetition", "Segment"]
