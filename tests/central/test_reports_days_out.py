"""The stock-out count by stretches (``reports._days_out``) against the day-by-day loop
the report used before: the same closing stock and days out for any opening stock, any
changes on any days of the period and any first counted day. No database: the report's
figures by hand are in tests/central/test_reports_issue17.py."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from central_api.services.reports import _days_out

QTY = st.decimals(min_value=-50, max_value=50, places=2, allow_nan=False, allow_infinity=False)


def day_by_day(
    opening: Decimal, changes: dict[int, Decimal], counted_from: int, period: int
) -> tuple[Decimal, int]:
    held, out = opening, 0
    for day in range(period):
        held += changes.get(day, Decimal(0))
        if day >= counted_from and held <= 0:
            out += 1
    return held, out


@st.composite
def histories(draw: st.DrawFn) -> tuple[Decimal, dict[int, Decimal], int, int]:
    period = draw(st.integers(min_value=1, max_value=60))
    changes = draw(st.dictionaries(st.integers(min_value=0, max_value=period - 1), QTY))
    return draw(QTY), changes, draw(st.integers(min_value=0, max_value=period)), period


@given(histories())
def test_counting_stretches_equals_counting_days(
    history: tuple[Decimal, dict[int, Decimal], int, int],
) -> None:
    assert _days_out(*history) == day_by_day(*history)


def test_the_figures_of_a_small_history_by_hand() -> None:
    # 5 on hand; day 2 sells 5 (out on days 2, 3), day 4 brings 1, day 6 sells 2 (out 6-9).
    changes = {2: Decimal(-5), 4: Decimal(1), 6: Decimal(-2)}
    assert _days_out(Decimal(5), changes, 0, 10) == (Decimal(-1), 6)
    assert _days_out(Decimal(5), changes, 3, 10) == (Decimal(-1), 5)
    assert _days_out(Decimal(0), {}, 0, 7) == (Decimal(0), 7)
