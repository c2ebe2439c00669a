"""Resident identity: which identifier of a message is the resident ID (居民身份证号), checked once.

A regional platform links every record on the resident ID, so every route that carries a person fills
its identity fields the same way, through one `identity:` block (docs/mapping.md "Resident identity"),
never a copy of paths per route. What the block fills:

* ``id_number`` + ``id_type_code`` (CV02.01.101 身份证件类别代码, WS 364 / DE02.01.031.00): the resident
  ID when one is found, else another identity document (passport, driver's licence ...);
* ``health_card_no`` (居民健康卡号, DE01.00.021.00) when the dataset has that field;
* ``patient_id`` for HL7 v2 routes that do not map it themselves: the hospital's own id, never an
  identity document (and, for any route, a ``patient_id`` equal to the resident ID found is removed);
* ``envelope.id_source``: which convention found the ID (``PID-3 CX.5=NNCHN``, ``PID-19`` ...).

Where senders put the ID is a table of `Convention` rows, tried in order; the first one that yields a
value wins. A route (or, through a convention's ``channels:``, one channel's senders) puts its own rows
before the defaults, e.g. a hospital that sends the citizen ID with CX.5 = ``1``.

HL7 v2 (v2.3.1 – v2.5.1 alike: PID-3 is CX, PID-19 ST "SSN number"):
  1. PID-3 repetitions whose CX.5 type is a national person identifier (HL7 v2.5.1 Table 0203
     ``NNCHN``, ``NN``, ``NI``; the sender convention ``ID``; CV02.01.101 code ``01``) or whose CX.4
     assigning authority is the issuer (``CHN``, ``公安部``, OID 2.16.156.10011.1.3 in CX.4.2);
  2. PID-19, when PID-3 has none (common in Chinese HIS that predate PID-3 repetitions);
  3. other identity documents in PID-3 (Table 0203 ``PPN`` passport → 03, ``DL`` driver's licence → 05,
     CV02.01.101 codes 02 – 99 as sent).
FHIR: ``<patient>.identifier`` by ``system`` only (the resident-ID OID, HL7 China IG IDC slice, plus
systems a route lists) — never "the first identifier".

Every resident ID (type 01) is checked by GB 11643 (`formats.check_resident_id`). An invalid one fails
the record naming the field and the masked value (default, `on_invalid: error`) or, with
`on_invalid: drop`, is left out (with its type code) and named in ``envelope.dropped``; both reach the
data-quality counts as an invalid ``id_number``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import ConfigError, MappingError
from engine.mapping import formats, paths
from engine.message_view import Source

RESIDENT_ID_OID = "2.16.156.10011.1.3"
"""患者身份证号标识 (WS/T 500 CDA header, shared/standards/oids.csv S6)."""
HEALTH_CARD_OID = "2.16.156.10011.1.19"
"""健康卡号 (WS/T 500 CDA header, oids.csv S6)."""
HL7_CHINA_IDC_OID = "2.16.840.1.113883.2.23.1.19.1"
"""HL7 China FHIR IG core-patient identifier slice IDC 身份证 (oids.csv S12)."""
RESIDENT_ID = "01"
"""CV02.01.101 01 居民身份证."""
HEALTH_CARD = "HC"
"""Not a CV02.01.101 code: a convention with this `id_type` finds the 居民健康卡 number."""
ID_TYPES = ("01", "02", "03", "04", "05", "06", "07", "99", HEALTH_CARD)
"""CV02.01.101 身份证件类别代码 (WS 364, shared/standards/value_domains.md) plus HEALTH_CARD."""

Where = Literal["cx5", "cx4", "cx4.2", "pid19", "system"]
WHERE_KEYS: tuple[Where, ...] = ("cx5", "cx4", "cx4.2", "pid19", "system")
CONVENTION_KEYS = (*WHERE_KEYS, "id_type", "channels", "source")
BLOCK_KEYS = ("on_invalid", "conventions", "patient")
IDENTITY_FIELDS = ("id_type_code", "id_number", "health_card_no")
"""Record fields only the identity block fills (a route mapping one of them too is an error)."""


@dataclass(frozen=True)
class Convention:
    """One place a sender puts an identity document: where, the code that marks it, what it is."""

    where: Where
    value: str
    id_type: str
    source: str
    """The standard and table (or sender) behind this row, for docs and review."""
    channels: frozenset[str] | None = None
    """Only messages from these channels use the row (a site's own CX.5 codes); None = every channel."""

    @property
    def label(self) -> str:
        """How `envelope.id_source` names the convention."""
        if self.where == "pid19":
            return "PID-19"
        if self.where == "system":
            return f"identifier.system={self.value}"
        return f"PID-3 CX.{self.where[2:]}={self.value}"


def _rows(where: Where, codes: Iterable[tuple[str, str]], source: str) -> tuple[Convention, ...]:
    return tuple(Convention(where, value, id_type, source) for value, id_type in codes)


_T0203 = "HL7 v2.5.1 Table 0203 (identifier type)"
_CV = "CV02.01.101 code sent in CX.5 (WS 364)"
HL7_RESIDENT_ID: tuple[Convention, ...] = (
    *_rows("cx5", [("NNCHN", "01")], _T0203 + " NNxxx: national person identifier, ISO 3166 CHN"),
    *_rows("cx5", [("NN", "01")], _T0203 + " NN without country: China assumed (policy, as in "
                                   "mappings/tables/hl7_0203_to_cv02_01_101.yaml)"),
    *_rows("cx5", [("NI", "01")], _T0203 + " NI: national unique individual identifier"),
    *_rows("cx5", [("ID", "01")], "sender convention (not in Table 0203) seen in Chinese HIS, issue #11"),
    *_rows("cx5", [("01", "01")], _CV),
    *_rows("cx4", [("CHN", "01"), ("公安部", "01")], "CX.4 assigning authority = the issuing state / "
                                                       "Ministry of Public Security (HL7 v2.5.1 §2.A.14.4)"),
    *_rows("cx4.2", [(RESIDENT_ID_OID, "01")], "CX.4.2 universal id = 患者身份证号标识 OID (oids.csv S6)"),
)
"""PID-3 rows that mark the resident ID, in the order tried."""
HL7_PID19 = Convention("pid19", "", RESIDENT_ID, "HL7 v2.3.1-v2.5.1 PID-19 SSN number (resident ID in "
                                                 "Chinese HIS)")
HL7_OTHER_DOCUMENTS: tuple[Convention, ...] = (
    *_rows("cx5", [("PPN", "03"), ("DL", "05")], _T0203 + ": PPN passport → 03 护照, DL → 05 驾驶证"),
    *_rows("cx5", [(c, c) for c in ("02", "03", "04", "05", "06", "07", "99")], _CV),
    *_rows("cx5", [("HC", HEALTH_CARD)], _T0203 + " HC: health card number → 居民健康卡号"),
    *_rows("cx4.2", [(HEALTH_CARD_OID, HEALTH_CARD)], "CX.4.2 = 健康卡号 OID (oids.csv S6)"),
)
"""PID-3 rows for other documents, tried after PID-19."""
HL7_DEFAULTS = (*HL7_RESIDENT_ID, HL7_PID19, *HL7_OTHER_DOCUMENTS)
FHIR_DEFAULTS: tuple[Convention, ...] = (
    *_rows("system", [(f"urn:oid:{RESIDENT_ID_OID}", "01"), (RESIDENT_ID_OID, "01")],
           "患者身份证号标识 OID (oids.csv S6); the bare OID form is seen from senders"),
    *_rows("system", [(f"urn:oid:{HL7_CHINA_IDC_OID}", "01")], "HL7 China FHIR IG IDC slice (oids.csv S12)"),
    *_rows("system", [(f"urn:oid:{HEALTH_CARD_OID}", HEALTH_CARD)], "健康卡号 OID (oids.csv S6)"),
)
HOSPITAL_ID_PATHS = ("PID-3[CX.5=PI].1", "PID-3[CX.5=MR].1", "PID-3[CX.5=PT].1", "PID-2.1")
"""HL7 v2.5.1 Table 0203 PI patient internal id, MR medical record number, PT patient external id;
PID-2 (v2.3.1/v2.4 patient ID (external)). Then the first PID-3 repetition that is no identity document."""
FHIR_PATIENT_BY_RESOURCE = {"Patient": "Patient", "Bundle": "Bundle.entry.resource.ofType(Patient)"}


@dataclass
class Found:
    """What the identity block found in one message (before the record is assembled)."""

    fields: dict[str, str] = field(default_factory=dict)
    id_source: str | None = None
    dropped: list[str] = field(default_factory=list)
    error: str | None = None
    documents: set[str] = field(default_factory=set)
    """Every identity-document value seen (upper-case): `patient_id` may hold none of them."""


Getter = Callable[[Source], "str | None"]
Cx = tuple[str, str, str, str]
"""One PID-3 repetition as (CX.1 id, CX.4.1 namespace, CX.4.2 universal id, CX.5 type code)."""


@dataclass(frozen=True)
class _Index:
    """HL7 v2 conventions by what they match, built once per route (the per-message path is lookups)."""

    order: dict[Convention, int]
    cx5: dict[str, Convention]
    cx4: dict[str, Convention]
    cx42: dict[str, Convention]
    typed: dict[str, str]
    """CX.5 code → the document type it names."""
    pid19: Convention | None

    @staticmethod
    def of(conventions: Iterable[Convention]) -> _Index:
        index = _Index({}, {}, {}, {}, {}, None)
        slots = {"cx5": index.cx5, "cx4": index.cx4, "cx4.2": index.cx42}
        pid19 = None
        for conv in conventions:
            if conv in index.order:
                continue
            index.order[conv] = len(index.order)
            if conv.where == "pid19":
                pid19 = pid19 or conv
            elif conv.where in slots:
                slots[conv.where].setdefault(conv.value, conv)
                if conv.where == "cx5":
                    index.typed.setdefault(conv.value, conv.id_type)
        return _Index(index.order, index.cx5, index.cx4, index.cx42, index.typed, pid19)


@dataclass(frozen=True)
class Identity:
    """A compiled `identity:` block; `find` runs it on one message."""

    kind: paths.Kind
    conventions: tuple[Convention, ...]
    line: int
    file: str
    drop_invalid: bool = False
    health_card: bool = True
    """Whether the dataset has `health_card_no`."""
    fhir: tuple[Getter, ...] = ()
    """FHIR: one getter per convention (the patient's identifier value with that system)."""
    patient: str = ""
    """FHIR: the FHIRPath of the patient (or its Reference) whose identifiers are read."""
    pid3: Callable[[Source], list[Cx]] | None = None
    """HL7 v2: reads the PID-3 repetitions."""
    pid19: Getter | None = None
    hospital_id: tuple[Getter, ...] = ()
    """HL7 v2 routes that do not map `patient_id`: the getters of HOSPITAL_ID_PATHS."""
    _system_getters: dict[str, Getter] = field(default_factory=dict, compare=False, repr=False)
    """FHIR getters for systems a channel declares, compiled on first use."""
    _indexes: dict[str | None, _Index] = field(default_factory=dict, compare=False, repr=False)
    """HL7 v2: the conventions that apply to a channel (its own first), indexed on first use."""

    def find(self, source: Source, channel: str | None, extra: tuple[Convention, ...] = ()) -> Found:
        """What the block fills for one message; `extra` are the conventions its channel declares."""
        found = Found()
        reps = self.pid3(source) if self.pid3 is not None else None
        hits = (self._fhir_hits(source, extra) if reps is None
                else self._hl7_hits(source, reps, channel, extra))
        resident = other = None
        card: str | None = None
        for conv, value in hits:
            if conv.channels is not None and channel not in conv.channels:
                continue
            found.documents.add(value.upper())
            if conv.id_type == HEALTH_CARD:
                card = card or value
            elif conv.id_type == RESIDENT_ID:
                resident = resident or (conv, value)
            else:
                other = other or (conv, value)
        if card is not None and self.health_card:
            found.fields["health_card_no"] = card
        chosen = resident or other
        if chosen is not None:
            conv, value = chosen
            found.id_source = conv.label
            if conv.id_type == RESIDENT_ID:
                try:
                    value = formats.check_resident_id(value)
                except MappingError as exc:
                    if self.drop_invalid:
                        found.dropped.append("id_number")
                    else:
                        found.error = f"{self.file}:{self.line} id_number: {conv.label} '{exc.value}' {exc}"
                    value = ""
            if value:
                found.fields["id_number"] = value
                found.fields["id_type_code"] = conv.id_type
        if self.hospital_id:
            hospital = self._hospital_id(source, reps or [], found.documents)
            if hospital is not None:
                found.fields["patient_id"] = hospital
        return found

    def _fhir_hits(self, source: Source, extra: tuple[Convention, ...]) -> list[tuple[Convention, str]]:
        hits = []
        rows = [(c, self._system_getter(c.value)) for c in extra if c.where == "system"]
        for conv, get in [*rows, *zip(self.conventions, self.fhir, strict=True)]:
            value = get(source)
            if value is not None and value.strip():
                hits.append((conv, value.strip()))
        return hits

    def _system_getter(self, system: str) -> Getter:
        get = self._system_getters.get(system)
        if get is None:
            get = self._system_getters[system] = _fhir_getter(self.patient, system)
        return get

    def _index(self, channel: str | None, extra: tuple[Convention, ...]) -> _Index:
        """The channel's applicable conventions, indexed once per channel (its `extra` rows come from
        the config, so they are the same for every message of the channel)."""
        index = self._indexes.get(channel)
        if index is None:
            rows = (*(c for c in extra if c.where != "system"), *self.conventions)
            index = self._indexes[channel] = _Index.of(
                c for c in rows if c.channels is None or channel in c.channels)
        return index

    def _hl7_hits(self, source: Source, reps: list[Cx], channel: str | None, extra: tuple[Convention, ...]
                  ) -> list[tuple[Convention, str]]:
        """(convention, value) for every convention that finds a value, in convention order (each
        convention's first matching repetition). A CX.4 authority rule does not claim a repetition whose
        CX.5 names another kind of document (a passport issued by CHN is not a resident ID)."""
        index = self._index(channel, extra)
        found: dict[Convention, str] = {}
        for rep in reps:
            cx1, authority, oid, cx5 = rep
            if not cx1:
                continue
            by_type = index.cx5.get(cx5) if cx5 else None
            if by_type is not None and by_type not in found:
                found[by_type] = cx1
            kind = index.typed.get(cx5) if cx5 else None
            for conv in (index.cx4.get(authority) if authority else None,
                         index.cx42.get(oid) if oid else None):
                if conv is not None and conv not in found and kind in (None, conv.id_type):
                    found[conv] = cx1
        if index.pid19 is not None and self.pid19 is not None:
            value = self.pid19(source)
            if value is not None and value.strip():
                found[index.pid19] = value.strip()
        return sorted(found.items(), key=lambda hit: index.order[hit[0]])

    def _hospital_id(self, source: Source, reps: list[Cx], documents: set[str]) -> str | None:
        for get in self.hospital_id:
            value = get(source)
            if value and value.strip().upper() not in documents:
                return value.strip()
        for cx1, _, _, _ in reps:
            if cx1 and cx1.upper() not in documents:
                return cx1
        return None


def parse_conventions(spec: Any, kind: paths.Kind) -> tuple[Convention, ...]:
    """The `conventions:` list of an `identity:` block → rows (ConfigError names the bad item). `kind`
    "any" (a channel's list) accepts HL7 v2 and FHIR rows alike: each route uses the ones of its kind."""
    if spec is None:
        return ()
    if not isinstance(spec, list):
        raise ConfigError("conventions: expected a list of {cx5|cx4|cx4.2|pid19|system: ..., "
                          "id_type: ...}")
    rows = []
    for i, item in enumerate(spec):
        where = f"conventions[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = [k for k in item if k not in CONVENTION_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(CONVENTION_KEYS)})")
        keys = [k for k in WHERE_KEYS if k in item]
        if len(keys) != 1:
            raise ConfigError(f"{where}: give exactly one of {', '.join(WHERE_KEYS)}")
        key: Where = keys[0]
        if kind != "any" and (key == "system") != (kind == "fhir"):
            raise ConfigError(f"{where}: {key} does not apply to a "
                              f"{'FHIR' if kind == 'fhir' else 'HL7 v2'} route")
        value = item[key]
        if key == "pid19":
            value = ""
        elif not isinstance(value, str) or not value or "]" in value:
            raise ConfigError(f"{where}.{key}: quote the code as text (got {value!r})")
        id_type = item.get("id_type", RESIDENT_ID)
        if id_type not in ID_TYPES:
            raise ConfigError(f"{where}.id_type: {id_type!r} is not a CV02.01.101 code or HC "
                              f"(allowed: {', '.join(ID_TYPES)})")
        channels = item.get("channels")
        if channels is not None and (not isinstance(channels, list)
                                     or not all(isinstance(c, str) for c in channels)):
            raise ConfigError(f"{where}.channels: expected a list of channel names")
        rows.append(Convention(key, value, id_type, str(item.get("source", "route")),
                               frozenset(channels) if channels is not None else None))
    return tuple(rows)


def compile_identity(spec: Any, *, kind: paths.Kind, resource_types: Iterable[str], file: str, line: int,
                     dataset_fields: Iterable[str] | None, maps_patient_id: bool) -> Identity:
    """An `identity:` block (``{}`` or ``true`` for the defaults) → `Identity`; ConfigError without
    file:line (the route loader adds it)."""
    if spec is True or spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"expected a mapping with keys {', '.join(BLOCK_KEYS)} (or true)")
    unknown = [k for k in spec if k not in BLOCK_KEYS]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (allowed: {', '.join(BLOCK_KEYS)})")
    on_invalid = spec.get("on_invalid", "error")
    if on_invalid not in ("error", "drop"):
        raise ConfigError(f"on_invalid: must be error or drop (got {on_invalid!r})")
    if kind not in ("hl7v2", "fhir"):
        raise ConfigError("the route must match message_type (HL7 v2) or resource_type (FHIR)")
    own = parse_conventions(spec.get("conventions"), kind)
    known = set(dataset_fields) if dataset_fields is not None else None
    common: dict[str, Any] = {"kind": kind, "line": line, "file": file, "drop_invalid": on_invalid == "drop",
                              "health_card": known is None or "health_card_no" in known}
    if kind == "hl7v2":
        if "patient" in spec:
            raise ConfigError("patient: applies to FHIR routes only")
        hospital: tuple[Getter, ...] = ()
        if not maps_patient_id and (known is None or "patient_id" in known):
            hospital = tuple(paths.getter("hl7v2", p) for p in HOSPITAL_ID_PATHS)
        return Identity(conventions=(*own, *HL7_DEFAULTS), pid3=_pid3_reader(),
                        pid19=paths.getter("hl7v2", "PID-19"), hospital_id=hospital, **common)
    patient = spec.get("patient")
    if patient is None:
        types = list(resource_types)
        patient = FHIR_PATIENT_BY_RESOURCE.get(types[0]) if len(types) == 1 else None
        if patient is None:
            raise ConfigError("patient: name the FHIRPath of the patient (or its Reference) "
                              "whose identifiers to read, e.g. Immunization.patient")
    if not isinstance(patient, str):
        raise ConfigError("patient: expected a FHIRPath")
    rows = (*own, *FHIR_DEFAULTS)
    getters = tuple(_fhir_getter(patient, c.value) for c in rows)
    return Identity(conventions=rows, fhir=getters, patient=patient, **common)


def _fhir_getter(patient: str, system: str) -> Getter:
    """The value of the patient's identifier with this system (a FHIRPath compiled once)."""
    if "'" in system:
        raise ConfigError(f"identifier system {system!r}: a quote is not allowed")
    return paths.getter("fhir", f"{patient}.identifier.where(system = '{system}').value")


def _pid3_reader() -> Callable[[Source], list[Cx]]:
    """Every PID-3 repetition of the message a source belongs to, as (CX.1, CX.4.1, CX.4.2, CX.5):
    split once from the raw field (HL7 v2.5.1 §2.A.14 CX), escapes decoded, HL7 null as ""."""
    from engine.hl7v2.access import message_of
    from engine.hl7v2.encoding import unescape
    from engine.hl7v2.segment import HL7_NULL, Segment

    def text(raw: str, seg: Segment) -> str:
        if not raw or raw == HL7_NULL:
            return ""
        return unescape(raw, seg.enc, seg.msg.codec) if seg.enc.escape in raw else raw

    def read(source: Source) -> list[Cx]:
        segs = message_of(source).children("PID")
        seg = segs[0] if segs else None
        if not isinstance(seg, Segment):
            return []
        enc = seg.enc
        out = []
        for rep in seg.reps(3):
            comps = rep.split(enc.component)
            comps += [""] * (5 - len(comps))
            hd = comps[3].split(enc.subcomponent) if enc.subcomponent else [comps[3]]
            out.append((text(comps[0], seg).strip(), text(hd[0], seg),
                        text(hd[1], seg) if len(hd) > 1 else "", text(comps[4], seg)))
        return out
    return read


__all__ = [
    "FHIR_DEFAULTS", "HL7_DEFAULTS", "IDENTITY_FIELDS", "Convention", "Found", "Identity", "compile_identity",
    "parse_conventions",
]
