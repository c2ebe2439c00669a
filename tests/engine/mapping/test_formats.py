"""Date/time conversion to D8 / DT15 and the GB 11643 resident ID check."""

from __future__ import annotations

import pytest

from engine.errors import MappingError
from engine.mapping import formats


@pytest.mark.parametrize(("text", "d8"), [
    ("19850312", "19850312"), ("198503121015", "19850312"), ("20240301101523+0800", "20240301"),
    ("1985-03-12", "19850312"), ("2024-03-01T20:15:00Z", "20240302"),
    ("2024-03-01T20:15:00+08:00", "20240301"),
])
def test_date_accepts_hl7_ts_and_fhir_dates(text: str, d8: str) -> None:
    """HL7 TS/DTM and FHIR date(Time) values become D8; a UTC time past 16:00 is the next day in Beijing."""
    assert formats.to_d8(text) == d8


@pytest.mark.parametrize("text", ["19851345", "1985", "198503", "2024-02-30", "12/03/1985", ""])
def test_date_rejects_impossible_or_partial_dates(text: str) -> None:
    """A date without a day, or an impossible one, is an error saying it is not a valid date."""
    with pytest.raises(MappingError, match="is not a valid date"):
        formats.to_d8(text)


@pytest.mark.parametrize(("text", "dt15"), [
    ("20240301101523+0800", "20240301T101523"), ("20240301020800+0000", "20240301T100800"),
    ("202403061415", "20240306T141500"), ("20240306", "20240306T000000"),
    ("20240316093512.1234+0800", "20240316T093512"), ("2024-03-16T09:35:12.5+08:00", "20240316T093512"),
])
def test_datetime_pads_precision_and_converts_to_beijing_time(text: str, dt15: str) -> None:
    """Missing time parts are zero; values with an offset are converted to UTC+08:00."""
    assert formats.to_dt15(text) == dt15


def test_datetime_keeps_the_sent_clock_when_asked() -> None:
    """`timezone: keep` leaves the wall-clock time as sent."""
    assert formats.to_dt15("20240301020800+0000", keep_timezone=True) == "20240301T020800"


def test_resident_id_check_character_follows_iso_7064_mod_11_2() -> None:
    """The check character uses weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 and '10X98765432'."""
    assert formats.id_check_char("33020319850312017") == "1"
    assert formats.id_check_char("33020619881111045") == "X"
    assert formats.check_resident_id("33020619881111045x") == "33020619881111045X"


def test_a_wrong_check_character_is_an_error_with_the_id_masked() -> None:
    """The error says which character was expected and quotes only the first 6 and last 4 characters."""
    with pytest.raises(MappingError, match="expects '1'") as info:
        formats.check_resident_id("330203198503120172")
    assert info.value.value == "330203********0172"


@pytest.mark.parametrize("text", ["33020319850312017", "3302031985031201711", "33020319851312017A"])
def test_resident_ids_of_the_wrong_shape_are_errors(text: str) -> None:
    """Anything but 17 digits plus a digit or X is not an 18-character resident ID."""
    with pytest.raises(MappingError):
        formats.check_resident_id(text)


def test_a_resident_id_with_an_impossible_birth_date_is_an_error() -> None:
    """Characters 7-14 must be a real date."""
    base = "33020319851332001"
    with pytest.raises(MappingError, match="birth date"):
        formats.check_resident_id(base + formats.id_check_char(base))


def test_birth_date_and_sex_derive_from_a_resident_id() -> None:
    """Birth date is characters 7-14; the 17th digit odd means 1 男性, even 2 女性."""
    assert formats.id_birth_date("330203198503120171") == "19850312"
    assert formats.id_sex("330203198503120171") == "1"
    assert formats.id_sex("330212202309100519") == "1"
    assert formats.id_sex("330202197512310048") == "2"


@pytest.mark.parametrize("value", ["20240101120000+4800", "20240101120000-2400", "20240101120000+0860",
                                   "2024-01-01T12:00:00+48:00"])
def test_a_time_zone_offset_out_of_range_is_a_field_error_not_an_internal_error(value: str) -> None:
    """Issue #16: `+4800` failed the whole message as "internal error: ValueError"."""
    with pytest.raises(MappingError, match="time zone offset"):
        formats.to_dt15(value)
