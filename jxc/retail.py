"""Counter sales (零售) on the wire: what a store's ``sale`` and ``return`` events carry
besides stock, shared by the edge that writes them and central that books their revenue.

A counter sale is one ``sale`` event per receipt line (and lot): ``doc_type =
"retail_receipt"``, ``doc_id`` the receipt number, ``doc_line`` the line. A refund is one
``return`` event per line (and lot) refunded, naming the *sold* receipt's line, so central
can tie it to what was sold. The unit price and the payment method travel in ``ref``:

    ``pos <payment> <unit price>``                        (a sale)
    ``pos <payment> <unit price> refund <refund number>``  (a refund)

``ref`` is the one free field every central already stores, compares on a replay and
hashes, so a counter sale needs no change to the event's contract or to ingest's hot path
(see ``docs/sales.md`` for the trade-off: central's event listings must treat the ``ref``
of a ``retail_receipt`` event as financial).

The line's money is computed the same way on both sides (:func:`line_amount`), so the
edge's receipt and central's revenue agree to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal, get_args

RETAIL_RECEIPT: Literal["retail_receipt"] = "retail_receipt"
Payment = Literal["cash", "card", "mobile", "voucher"]
PAYMENTS: tuple[str, ...] = get_args(Payment)
CENT = Decimal("0.01")
MAX_PRICE = Decimal(10) ** 9
"""A unit price above this is a typing slip, not a price."""


def line_amount(qty: Decimal, unit_price: Decimal) -> Decimal:
    """A line's money: quantity times unit price, rounded half up to the cent (the till
    pays in cents; a weighed quantity times a price has more places)."""
    return (qty * unit_price).quantize(CENT, rounding=ROUND_HALF_UP)


def receipt_code(site_id: str, number: int) -> str:
    """The printed receipt number: the site and its gapless counter, e.g. ``S01-R00000042``."""
    return f"{site_id}-R{number:08d}"


@dataclass(frozen=True, slots=True)
class PosRef:
    """What a counter event's ``ref`` says."""

    payment: str
    unit_price: Decimal
    refund: str | None = None
    """The refund's own number, for a ``return``; None for a sale."""

    def text(self) -> str:
        base = f"pos {self.payment} {format(self.unit_price, 'f')}"
        return base if self.refund is None else f"{base} refund {self.refund}"


def parse_ref(ref: str | None) -> PosRef | None:
    """The counter fields of ``ref``, or None when it is no counter event's ref."""
    parts = (ref or "").split(" ")
    shaped = len(parts) == 3 or (len(parts) == 5 and parts[3] == "refund" and bool(parts[4]))
    if not shaped or parts[0] != "pos" or parts[1] not in PAYMENTS:
        return None
    try:
        price = Decimal(parts[2])
    except InvalidOperation:
        return None
    if not price.is_finite() or not Decimal(0) <= price < MAX_PRICE:
        return None
    return PosRef(parts[1], price, parts[4] if len(parts) == 5 else None)
