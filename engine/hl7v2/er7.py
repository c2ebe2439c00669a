"""A lazy ER7 (pipe-and-hat) reader for HL7 v2 messages: the inbound hot path.

`Er7Message.parse` only splits the text into segments and checks the MSH header (HL7 v2.5.1 §2.14.9);
fields, repetitions, components and subcomponents (§2.5.3) are split when a path is first read, and
escape sequences (§2.7) are decoded on read. That is ~20-50x cheaper than building a full object tree
(python-hl7, hl7apy) when a route reads a dozen values from a message.

Reads follow one rule: a value that is absent, empty, or the HL7 null ``""`` is ``None`` from `get`
and left out of `get_all` (use `Segment.raw_value` to see the literal text). Numbering is the spec's:
MSH-1 is the field separator and MSH-2 the encoding characters, so ``MSH-9`` is the message type.

`Er7Message`, `Segment` and `Repetition` all satisfy `engine.message_view.Source`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal

from engine.errors import Hl7ParseError
from engine.hl7v2.encoding import Encoding, encoding_of
from engine.hl7v2.lines import split_segments
from engine.hl7v2.path import ALL, FIRST, Path, compile_path
from engine.hl7v2.segment import HL7_NULL, Repetition, Segment, children_of
from engine.hl7v2.validate import (
    CONTROL_CHARS,
    MSH_FIELD_NAMES,
    VALID_NAMES,
    bad_line,
    check_name,
    has_control_chars,
    not_msh_reason,
)
from engine.message_view import Source

__all__ = ["HL7_NULL", "Er7Message", "Repetition", "Segment"]

def _first_component(enc: Encoding, raw: str) -> str:
    return raw.split(enc.repetition, 1)[0].split(enc.component, 1)[0]


class Er7Message:
    """One parsed HL7 v2 message; build with `Er7Message.parse`."""

    __slots__ = ("_by_name", "_codec", "_header", "_lines", "_segs", "encoding", "text")

    kind: Literal["hl7v2"] = "hl7v2"

    def __init__(self, text: str, encoding: Encoding, lines: list[str],
                 by_name: dict[str, list[int]]) -> None:
        """Use `parse`; ``lines`` are validated segment texts, ``by_name`` their indexes per ID."""
        self.text, self.encoding, self._lines, self._by_name = text, encoding, lines, by_name
        self._segs: list[Segment | None] = [None] * len(lines)  # built on first access
        self._codec: str | None = None
        self._header: dict[str, str] | None = None

    def _seg(self, i: int) -> Segment:
        seg = self._segs[i]
        if seg is None:
            seg = self._segs[i] = Segment(self, i, self._lines[i])
        return seg

    def release(self) -> None:
        """Drop the segments built so far (they are rebuilt on the next access).

        Each `Segment` points back to its message, so a message whose segments were read is a
        reference cycle that only the cyclic garbage collector frees; a caller done with the message
        releases it so that reference counting frees it at once (measured end to end: ~20 cyclic
        objects per message made the collector run every few messages)."""
        self._segs = [None] * len(self._lines)

    @property
    def msh(self) -> Segment:
        """The MSH segment."""
        return self._seg(0)

    @property
    def segments_list(self) -> list[Segment]:
        """Every segment in message order."""
        return [self._seg(i) for i in range(len(self._lines))]

    # --- parsing ---------------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Er7Message:
        """Split ``text`` into segments (CR, LF or CRLF terminators) and validate MSH.

        Raise `Hl7ParseError` with a human reason when the text is not an HL7 v2 message.
        """
        text = text.lstrip("\ufeff\r\n\t ").rstrip("\r\n\t ")
        if not text.startswith("MSH"):
            raise Hl7ParseError(not_msh_reason(text), code="100", location="MSH")
        bad = CONTROL_CHARS.search(text) if has_control_chars(text) else None
        if bad:
            raise Hl7ParseError(
                f"control character 0x{ord(bad.group()):02X} at offset {bad.start()}: binary or "
                "framed data, not HL7 text", code="102")
        lines = split_segments(text)  # CR, else LF (engine/hl7v2/lines.py: HL7 v2.5.1 §2.8)
        if len(text) < 8:
            raise Hl7ParseError("MSH-1/MSH-2 encoding characters missing", code="101",
                                location="MSH^1^2")
        fs = text[3]
        msh = lines[0]
        end = msh.find(fs, 4)
        enc = encoding_of(fs, msh[4:] if end < 0 else msh[4:end])
        by_name: dict[str, list[int]] = {}
        kept: list[str] = []
        ok = VALID_NAMES
        for i, line in enumerate(lines):
            if not line:
                continue
            name = line[:3]
            if name not in ok:
                check_name(name, i, line, fs)
            if len(line) > 3 and line[3] != fs:
                raise bad_line(i, line, fs)
            idxs = by_name.get(name)
            if idxs is None:
                by_name[name] = [len(kept)]
            else:
                if name == "MSH":
                    raise Hl7ParseError(f"a second MSH at line {i + 1}: a batch? split it with "
                                        "engine.hl7v2.batch.split_batch", code="100")
                idxs.append(len(kept))
            kept.append(line)
        msg = cls(text, enc, kept, by_name)
        count = len(msg.msh.fields) - 1
        if count < 12:
            missing = count + 1
            raise Hl7ParseError(
                f"MSH-{missing} {MSH_FIELD_NAMES[missing]} missing: MSH has only {count} fields, "
                "12 are required (truncated header?)", code="101", location=f"MSH^1^{missing}")
        if not msg.msh.fields[9]:
            raise Hl7ParseError("MSH-9 message type is empty", code="101", location="MSH^1^9")
        return msg

    # --- Source protocol -------------------------------------------------------------------------

    def get(self, path: str | Path) -> str | None:
        """First non-empty decoded value at an absolute path (``PID-5.1``), else ``None``."""
        p = path if isinstance(path, Path) else compile_path(path)
        if p.field is not None and p.seg_index != ALL and p.rep != ALL and p.rep_filter is None:
            # the common case, one segment and one repetition: no generators
            idxs = self._by_name.get(p.segment)  # type: ignore[arg-type]
            n = 1 if p.seg_index == FIRST else p.seg_index
            if idxs is None or n > len(idxs):
                return None
            seg = self._seg(idxs[n - 1])
            raw = seg.raw_value(p.field, 1 if p.rep == FIRST else p.rep, p.component, p.subcomponent)
            return seg.decode(raw) if raw and raw != HL7_NULL else None
        for raw, seg in self._raw(p):
            if raw and raw != HL7_NULL:
                return seg.decode(raw)
        return None

    def get_all(self, path: str | Path) -> list[str]:
        """Every non-empty decoded value at an absolute path, in message order."""
        p = path if isinstance(path, Path) else compile_path(path)
        return [seg.decode(raw) for raw, seg in self._raw(p) if raw and raw != HL7_NULL]

    def children(self, group_path: str) -> list[Source]:
        """One `Segment` per matching segment (``OBX[*]``) or `Repetition` per field repetition."""
        p = compile_path(group_path)
        return children_of(self._segments_for(p, all_when_omitted=True), p)

    @property
    def header(self) -> Mapping[str, str]:
        """Routing facts from MSH, keys as `engine.message_view.HEADER_KEYS` (read once, then cached)."""
        header = self._header
        if header is None:
            header = self._header = self._read_header()
        return header

    def _read_header(self) -> dict[str, str]:
        """Every header fact in one pass over the MSH fields (HL7 v2.5.1 §2.14.9): each value is the
        first component of the first repetition, escapes decoded, the HL7 null read as ""; MSH-9 is
        split into its components, MSH-10 decoded whole, MSH-11 kept as sent."""
        fields = self.msh.fields
        count = len(fields)
        rep, comp = self.encoding.repetition, self.encoding.component
        decode = self.msh.decode

        def first(n: int) -> str:
            raw = fields[n].partition(rep)[0].partition(comp)[0] if n < count else ""
            return decode(raw) if raw != HL7_NULL else ""

        msh9 = fields[9].partition(rep)[0].split(comp) if count > 9 else [""]

        def part9(n: int) -> str:
            return decode(msh9[n - 1]) if n <= len(msh9) else ""

        code, trigger = part9(1), part9(2)
        return {
            "kind": "hl7v2", "message_type": f"{code}^{trigger}" if trigger else code,
            "message_code": code, "trigger_event": trigger, "message_structure": part9(3),
            "control_id": decode(fields[10]) if count > 10 else "",
            "sending_application": first(3), "sending_facility": first(4),
            "receiving_application": first(5), "receiving_facility": first(6), "version": first(12),
            "processing_id": fields[11] if count > 11 else "", "charset": first(18), "resource_type": ""}

    # --- segments --------------------------------------------------------------------------------

    def segments(self, name: str | None = None) -> list[Segment]:
        """All segments named ``name`` (all segments when ``None``), in message order."""
        if name is None:
            return self.segments_list
        return [self._seg(i) for i in self._by_name.get(name, ())]

    def groups(self, head: str, children: tuple[str, ...] | None = None
               ) -> list[tuple[Segment, list[Segment]]]:
        """Each ``head`` segment with the segments after it, up to the next ``head``.

        Only segments named in ``children`` are kept (all when ``None``); e.g. ``groups("OBR",
        ("OBX", "NTE"))`` gives the ORDER_OBSERVATION groups of an ORU^R01 (§7.4.1.1).
        """
        out: list[tuple[Segment, list[Segment]]] = []
        for seg in self.segments_list:
            if seg.name == head:
                out.append((seg, []))
            elif out and (children is None or seg.name in children):
                out[-1][1].append(seg)
        return out

    def following(self, index: int, name: str) -> list[int]:
        """Indexes of the ``name`` segments after segment ``index``, up to the next segment named like
        it (the OBX of one OBR). By segment ID only: no `Segment` is built for the ones skipped."""
        lines = self._lines
        head = lines[index][:3]
        out = []
        for i in range(index + 1, len(lines)):
            seg_name = lines[i][:3]
            if seg_name == head:
                break
            if seg_name == name:
                out.append(i)
        return out

    def _segments_for(self, p: Path, *, all_when_omitted: bool = False) -> list[Segment]:
        idxs = self._by_name.get(p.segment or "", [])
        idx = p.seg_index
        if not (idx == ALL or (idx == FIRST and all_when_omitted)):
            idx = 1 if idx == FIRST else idx
            idxs = idxs[idx - 1:idx]
        return [self._seg(i) for i in idxs]

    def _raw(self, p: Path) -> Iterator[tuple[str, Segment]]:
        for seg in self._segments_for(p):
            for raw in seg.raw_values(p):
                yield raw, seg

    # --- header properties (HL7 v2.5.1 §2.14.9) --------------------------------------------------

    def _msh(self, n: int) -> str:
        fields = self.msh.fields
        return fields[n] if n < len(fields) else ""

    def _msh_first(self, n: int) -> str:
        raw = _first_component(self.encoding, self._msh(n))
        return self.msh.decode(raw) if raw != HL7_NULL else ""

    @property
    def sending_application(self) -> str:
        """MSH-3.1 namespace ID."""
        return self.header["sending_application"]

    @property
    def sending_facility(self) -> str:
        """MSH-4.1 namespace ID."""
        return self.header["sending_facility"]

    @property
    def receiving_application(self) -> str:
        """MSH-5.1 namespace ID."""
        return self.header["receiving_application"]

    @property
    def receiving_facility(self) -> str:
        """MSH-6.1 namespace ID."""
        return self.header["receiving_facility"]

    @property
    def control_id(self) -> str:
        """MSH-10 message control ID (echoed in MSA-2 of the ACK)."""
        return self.header["control_id"]

    @property
    def message_code(self) -> str:
        """MSH-9.1, e.g. ``ADT`` (table 0076)."""
        return self.header["message_code"]

    @property
    def trigger_event(self) -> str:
        """MSH-9.2, e.g. ``A01`` (table 0003)."""
        return self.header["trigger_event"]

    @property
    def message_structure(self) -> str:
        """MSH-9.3, e.g. ``ADT_A01`` (table 0354); often empty before v2.3.1."""
        return self.header["message_structure"]

    @property
    def message_type(self) -> str:
        """``MSH-9.1^MSH-9.2`` (``ADT^A01``), or just MSH-9.1 when there is no trigger event."""
        return self.header["message_type"]

    @property
    def processing_id(self) -> str:
        """MSH-11 as sent (``P``, ``T``, ``D``, possibly with a processing mode component)."""
        return self.header["processing_id"]

    @property
    def version(self) -> str:
        """MSH-12.1 version ID, e.g. ``2.5.1``."""
        return self.header["version"]

    @property
    def accept_ack_type(self) -> str:
        """MSH-15 (table 0155: AL, NE, ER, SU; empty = original acknowledgment mode)."""
        return self._msh_first(15)

    @property
    def application_ack_type(self) -> str:
        """MSH-16 (table 0155)."""
        return self._msh_first(16)

    @property
    def charset(self) -> str:
        """MSH-18 first repetition (table 0211), e.g. ``UNICODE UTF-8``; ``""`` when not declared."""
        return self.header["charset"]

    @property
    def codec(self) -> str:
        """The Python codec for MSH-18 (for ``\\X..\\`` escapes); latin-1 when unknown."""
        if self._codec is None:
            from engine.hl7v2.charset import python_codec

            # raw MSH-18: decoding it (for escapes) would itself need the codec
            name = _first_component(self.encoding, self._msh(18))
            try:
                self._codec = python_codec(name) if name and name != HL7_NULL else "utf-8"
            except LookupError:
                self._codec = "latin-1"
        return self._codec

    def __repr__(self) -> str:
        return f"<Er7Message {self.message_type} control_id={self.control_id!r}>"
