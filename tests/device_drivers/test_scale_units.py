"""Weight units: exact where the definitions are exact, rounded only on request."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.scales import Weight, WeightReading, convert_weight


@pytest.mark.parametrize(
    ("value", "from_unit", "to_unit", "expected"),
    [
        ("1", "lb", "kg", "0.45359237"),
        ("1", "lb", "g", "453.59237"),
        ("16", "oz", "lb", "1"),
        ("1.250", "kg", "g", "1250.000"),
        ("1250", "g", "kg", "1.25"),
        ("1", "g", "mg", "1000"),
        ("-0.5", "kg", "g", "-500.0"),
    ],
)
def test_exact_conversions(value: str, from_unit: str, to_unit: str, expected: str) -> None:
    result = convert_weight(Decimal(value), from_unit, to_unit)
    assert result == Decimal(expected)


def test_into_pounds_is_inexact_so_the_caller_must_choose_the_places() -> None:
    with pytest.raises(ValueError, match="pass places"):
        convert_weight(Decimal(1), "kg", "lb")
    assert convert_weight(Decimal(1), "kg", "lb", places=4) == Decimal("2.2046")
    assert str(convert_weight(Decimal(1), "kg", "lb", places=6)) == "2.204623"


def test_unknown_units_and_non_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown weight unit 'stone'"):
        convert_weight(Decimal(1), "stone", "kg")
    with pytest.raises(ValueError, match="not a weight"):
        convert_weight(Decimal("NaN"), "g", "kg")


@given(
    st.integers(-(10**12), 10**12),
    st.integers(0, 6),
    st.sampled_from(["mg", "g", "kg", "lb", "oz"]),
)
def test_to_grams_and_back_is_the_identity(units: int, places: int, unit: str) -> None:
    value = Decimal(units).scaleb(-places)
    grams = convert_weight(value, unit, "g")
    assert convert_weight(grams, "g", unit) == value


def test_weight_and_reading_convert_too() -> None:
    assert Weight(Decimal("2"), "lb").to("kg") == Weight(Decimal("0.90718474"), "kg")
    reading = WeightReading(
        device_id="s",
        net=Decimal("1.5"),
        gross=None,
        tare=None,
        unit="kg",
        stable=True,
        raw=b"S S 1.5 kg",
        read_at=datetime.datetime.now(datetime.UTC),
    )
    assert reading.net_in("g") == Decimal(1500)
