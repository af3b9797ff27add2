"""Receiving against open PO lines: which line, how many, and whether a carton is accepted.

Pure functions over what the catalog cached, so the decisions are tested without devices.
A carton is never refused for being wrong (it is on the dock; the fact is booked): a short
weight, an unknown item, a carton with no open line, an expired or short-dated lot and an
over-receipt are booked to the site's quarantine location with a reason a person sees, and
the event still names its PO line where there is one, so central's PO progress counts it and
raises its exception (over-receipt) for a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from edge_agent.catalog import CachedItem, KnownBarcode, LineState, OpenLine

DEFAULT_WEIGHT_TOLERANCE = Decimal(2)
"""Percent an item without its own ``weight_tolerance`` may weigh off what is expected."""


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Why a carton goes to quarantine: a code for reports and a sentence for the dock."""

    code: str
    reason: str


def candidates(lines: Sequence[OpenLine]) -> list[OpenLine]:
    """The lines a carton may be booked against, the likeliest first found: those still
    short beyond their under-receipt tolerance (``state`` open); else those short within
    it (complete enough: a carton of the rest is less likely than one of a line still
    open); when every line has its quantity, all of them (the booking is then an
    over-receipt, decided by :func:`check`)."""
    open_ = [line for line in lines if line.state is LineState.OPEN]
    short = [line for line in lines if line.remaining > 0]
    return open_ or short or list(lines)


def line_note(line: OpenLine) -> str:
    """What the display line adds about the line a carton was booked against, once the
    carton is counted: how much of it has come and whether it is complete, complete
    within its under-receipt tolerance (and how many are missing), or still open."""
    done = f"{line.po_id}/{line.line_no} {line.received}/{line.qty} {line.uom}"
    state = line.state
    if state is LineState.OPEN:
        return f"{done}, {line.remaining} open"
    if state is LineState.SHORT_WITHIN_TOLERANCE:
        return (
            f"{done}, complete within -{line.under_tolerance}%"
            f" ({line.remaining} short, accepted as complete)"
        )
    if state is LineState.OVER:
        return f"{done}, over the +{line.over_tolerance}% tolerance"
    return f"{done}, complete"


def quantity(
    known: KnownBarcode,
    item: CachedItem | None,
    *,
    count: int | None,
    weight_kg: Decimal | None,
) -> Decimal:
    """How many base units a carton holds.

    In order: the GS1 count (AI 30/37) of the barcode's packs; the barcode's pack unit (a
    case GTIN of 12); the stable weight ÷ the item's unit weight, rounded to whole units,
    when the barcode means one unit; else one unit.
    """
    if count is not None:
        return Decimal(count) * known.qty_per
    if known.qty_per != 1 or known.pack_uom is not None:
        return known.qty_per
    if weight_kg is not None and item is not None and item.unit_weight:
        units = (weight_kg / item.unit_weight).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        return max(units, Decimal(1))
    return known.qty_per


def _off_by(actual: Decimal, expected: Decimal) -> Decimal:
    return abs(actual - expected) * 100 / expected


def check(
    item: CachedItem,
    line: OpenLine | None,
    qty: Decimal,
    *,
    today: date,
    expiry: date | None = None,
    weight_kg: Decimal | None = None,
    label_net_kg: Decimal | None = None,
) -> Quarantine | None:
    """The first reason the carton must go to quarantine, or None to put it away.

    Weight is checked first (a short carton is the most common and the most costly to
    find later), then the lot's dates, then the line's over-receipt tolerance.
    """
    return (
        _check_weight(item, qty, weight_kg, label_net_kg)
        or _check_dates(item, today, expiry)
        or _check_line(item, line, qty)
    )


def _check_weight(
    item: CachedItem, qty: Decimal, weight_kg: Decimal | None, label_net_kg: Decimal | None
) -> Quarantine | None:
    if weight_kg is None:
        return None
    tolerance = DEFAULT_WEIGHT_TOLERANCE if item.weight_tolerance is None else item.weight_tolerance
    if item.unit_weight:
        expected = item.unit_weight * qty
        if expected > 0 and _off_by(weight_kg, expected) > tolerance:
            word = "short" if weight_kg < expected else "over"
            return Quarantine(
                f"{word}_weight",
                f"{word} weight: {weight_kg} kg on the scale, {expected} kg expected for"
                f" {qty} {item.uom} (±{tolerance}%)",
            )
    if (
        label_net_kg is not None
        and label_net_kg > 0
        and _off_by(weight_kg, label_net_kg) > tolerance
    ):
        return Quarantine(
            "label_weight",
            f"weight differs from the label: {weight_kg} kg on the scale, the label says"
            f" {label_net_kg} kg net (±{tolerance}%)",
        )
    return None


def _check_dates(item: CachedItem, today: date, expiry: date | None) -> Quarantine | None:
    if expiry is None:
        if item.expiry_tracked:
            return Quarantine("no_expiry", "the item is expiry-tracked but the carton has none")
        return None
    if expiry < today:
        return Quarantine("expired", f"lot expired on {expiry.isoformat()}")
    left = (expiry - today).days
    if item.min_remaining_days is not None and left < item.min_remaining_days:
        return Quarantine(
            "short_dated",
            f"short-dated: {left} days of shelf life left, at least"
            f" {item.min_remaining_days} required",
        )
    return None


def _check_line(item: CachedItem, line: OpenLine | None, qty: Decimal) -> Quarantine | None:
    if line is None:
        return Quarantine("no_open_line", f"no open PO line for {item.item_code} at this site")
    if line.received + qty > line.ceiling:
        return Quarantine(
            "over_receipt",
            f"over-receipt: {line.po_id} line {line.line_no} ordered {line.qty} {line.uom},"
            f" {line.received} already received, this carton adds {qty}"
            f" (at most {line.ceiling} within +{line.over_tolerance}%)",
        )
    return None
