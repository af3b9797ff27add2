"""Amounts are stored as integer micro-units: exact both ways, and lossy input is refused."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central_api.models import MicroUnits, from_micro_units, to_micro_units, to_micro_units_many
from jxc.contract import MAX_ABS_AMOUNT

amounts = st.decimals(
    min_value=-MAX_ABS_AMOUNT + Decimal("0.000001"),
    max_value=MAX_ABS_AMOUNT - Decimal("0.000001"),
    places=6,
    allow_nan=False,
    allow_infinity=False,
)


@given(amounts)
def test_every_contract_amount_survives_the_round_trip(amount: Decimal) -> None:
    assert from_micro_units(to_micro_units(amount)) == amount


@pytest.mark.parametrize(
    ("amount", "micro"),
    [
        (Decimal("3.75"), 3_750_000),
        (Decimal("-0.000001"), -1),
        (Decimal("1.500000000"), 1_500_000),  # trailing zeros lose nothing
        (Decimal("1E+3"), 1_000_000_000),
        (7, 7_000_000),
    ],
)
def test_to_micro_units(amount: Decimal | int, micro: int) -> None:
    assert to_micro_units(amount) == micro


@pytest.mark.parametrize(
    ("micro", "text"),
    [(3_750_000, "3.75"), (100_000_000, "100"), (-1, "-0.000001"), (0, "0")],
)
def test_from_micro_units_gives_the_shortest_plain_spelling(micro: int, text: str) -> None:
    assert format(from_micro_units(micro), "f") == text


@pytest.mark.parametrize(
    "amount",
    [
        Decimal("0.0000001"),
        Decimal("1.0000000000000000000000000000000001"),  # beyond 28 digits of context
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal(2**63),
    ],
)
def test_lossy_or_impossible_amounts_are_refused(amount: Decimal) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by reason
        to_micro_units(amount)


@pytest.mark.parametrize("amount", [1.5, True, "1.5"])
def test_anything_but_decimal_or_int_is_refused(amount: object) -> None:
    with pytest.raises(TypeError, match="Decimal or an int"):
        to_micro_units(amount)  # type: ignore[arg-type]


def test_column_type_binds_and_reads_none() -> None:
    column_type = MicroUnits()
    assert column_type.process_bind_param(None, dialect=None) is None  # type: ignore[arg-type]
    assert column_type.process_result_value(None, dialect=None) is None  # type: ignore[arg-type]


def _outcome(convert: Callable[[], object]) -> object:
    try:
        return convert()
    except (TypeError, ValueError) as error:
        return type(error), str(error)


anything = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    amounts,
    st.sampled_from([Decimal("sNaN"), Decimal("-0"), Decimal("1.500000000"), True, 1.5, "1"]),
)


@given(st.lists(anything, max_size=12))
def test_many_at_once_is_one_by_one(values: list[Decimal]) -> None:
    """The batch conversion gives the same ints, or raises the same error for the first
    value at fault, as converting each value by itself."""
    one_by_one = _outcome(lambda: [to_micro_units(value) for value in values])
    assert _outcome(lambda: to_micro_units_many(values)) == one_by_one


@given(st.lists(amounts, max_size=50))
def test_many_contract_amounts_convert_exactly(values: list[Decimal]) -> None:
    micro = to_micro_units_many(values)
    assert [type(value) for value in micro] == [int] * len(values)
    assert [from_micro_units(value) for value in micro] == values
