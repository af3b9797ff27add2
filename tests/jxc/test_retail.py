"""The counter's ``ref`` (price and payment method) reads back as written, and nothing else
reads as one; line money rounds half up to the cent."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from jxc.retail import PAYMENTS, PosRef, line_amount, parse_ref, receipt_code

_PRICE = st.decimals(min_value=0, max_value=Decimal("999999999.999999"), places=6)


@settings(max_examples=30)
@given(
    payment=st.sampled_from(PAYMENTS),
    price=_PRICE,
    refund=st.none() | st.integers(1, 10**8).map(lambda n: receipt_code("S01", n)),
)
def test_a_counter_ref_reads_back_as_written_and_fits_an_event(
    payment: str, price: Decimal, refund: str | None
) -> None:
    pos = PosRef(payment, price, refund)
    text = pos.text()
    assert parse_ref(text) == pos
    assert len(text) <= 128  # an event's ref holds it


def test_other_refs_are_no_counter_refs() -> None:
    for ref in (
        None,
        "",
        "sscc 306141410000000012",
        "pos cash",
        "pos bitcoin 1",
        "pos cash abc",
        "pos cash NaN",
        "pos cash -1",
        "pos cash 1 refund",
        "pos cash 1 swap S01-R00000001",
    ):
        assert parse_ref(ref) is None, ref


def test_line_money_rounds_half_up_to_the_cent() -> None:
    assert line_amount(Decimal("1.5"), Decimal("3.3")) == Decimal("4.95")
    assert line_amount(Decimal("0.125"), Decimal(1)) == Decimal("0.13")
    assert line_amount(Decimal("0.333"), Decimal("9.99")) == Decimal("3.33")
