"""What a label says, apart from the printer language that draws it.

A station knows what goes on a carton (the item, how much, the lot, where it was booked);
it must not know whether the printer at its dock speaks ZPL or TSPL. It hands an
:class:`ItemLabel` to a :class:`~device_drivers.printers.base.LabelPrinter` in a
:class:`LabelJob`, and the driver lays it out (:func:`item_label_layout`, the one layout
every language renders) and encodes it in its own language. A site file then picks ``zpl``
or ``tspl`` and no station notices.

Values are checked here, once, for what no printer could carry (control characters, a
float quantity), so a bad label is a :class:`LabelDataError` in the caller's thread rather
than a job that fails at the printer.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from decimal import Decimal

from device_drivers.printers.base import JOB_ID_PATTERN, LabelDataError
from device_drivers.printers.zpl import Code128, Label, LabelField, QrCode, Text

__all__ = ["ItemLabel", "LabelJob", "item_label_layout", "sample_label"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_MAX_TEXT = 128

WIDTH_DOTS = 812
"""4 in at 203 dpi, the width of the dock labels both languages are laid out for."""
LENGTH_DOTS = 609
"""3 in at 203 dpi."""


@dataclass(frozen=True, slots=True)
class ItemLabel:
    """One carton's label: what was booked and the codes to find it again.

    ``quantity`` and ``net_weight_kg`` are exact decimals (a float would print 0.30000000000000004
    one day). ``reference`` is what the QR code carries: something that identifies the
    booking itself (``jxc:<site>:<seq>:<event id>``). ``gtin`` is the item's trade number
    when known; the Code 128 carries the item code, which is what a picker scans.
    """

    item_code: str
    quantity: Decimal
    unit: str
    site_id: str
    name: str | None = None
    gtin: str | None = None
    lot: str | None = None
    expiry: datetime.date | None = None
    net_weight_kg: Decimal | None = None
    location: str | None = None
    seq: int | None = None
    reference: str | None = None

    def __post_init__(self) -> None:
        for name in ("item_code", "unit", "site_id"):
            if not getattr(self, name):
                raise LabelDataError(f"label {name} must not be empty")
        for name in ("item_code", "unit", "site_id", "name", "gtin", "lot", "location"):
            _check_text(name, getattr(self, name))
        _check_text("reference", self.reference)
        for name in ("quantity", "net_weight_kg"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite()):
                raise LabelDataError(f"label {name} must be a finite Decimal, got {value!r}")
        if self.gtin is not None and not (
            self.gtin.isdigit() and len(self.gtin) in (8, 12, 13, 14)
        ):
            raise LabelDataError(f"label gtin must be 8, 12, 13 or 14 digits, got {self.gtin!r}")


def _check_text(name: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise LabelDataError(f"label {name} must be text, got {value!r}")
    if _CONTROL.search(value):
        raise LabelDataError(f"label {name} must not contain control characters: {value!r}")
    if len(value) > _MAX_TEXT:
        raise LabelDataError(f"label {name} is longer than {_MAX_TEXT} characters")


@dataclass(frozen=True, slots=True)
class LabelJob:
    """One label to print under an id chosen by the caller.

    The id is the caller's (a receipt's event id) so that a job retried after a crash of
    the agent is recognised as the same job by the driver's journal and not printed twice.
    """

    job_id: str
    label: ItemLabel

    def __post_init__(self) -> None:
        if not JOB_ID_PATTERN.fullmatch(self.job_id):
            raise LabelDataError(f"job id {self.job_id!r} must be 1-64 of A-Z a-z 0-9 . _ : -")


def item_label_layout(label: ItemLabel) -> Label:
    """A 4 x 3 in dock label: the fields and where they go, for every printer language.

    The Code 128 carries the item code when Code 128 can carry it whole (else the text line
    and the QR code do: a shortened barcode would scan as a different item); the QR code
    carries the booking's reference.
    """
    where = label.site_id + (f" #{label.seq}" if label.seq is not None else "")
    if label.location:
        where += f"  {label.location}"
    fields: list[LabelField] = [
        Text(30, 20, label.item_code[:32], 50),
        Text(30, 85, f"QTY {label.quantity:f} {label.unit}", 40),
        Text(30, 135, f"LOT {label.lot or '-'}   EXP {label.expiry or '-'}", 30),
        Text(30, 175, where, 30),
    ]
    printable = all(32 < ord(c) < 127 for c in label.item_code) and not set(label.item_code) & set(
        "^~>"
    )
    if printable and len(label.item_code) <= 40:
        fields.append(Code128(30, 225, label.item_code, height=90))
    extra_y = 340
    if label.name:
        fields.append(Text(30, extra_y, label.name[:40], 30))
        extra_y += 40
    if label.net_weight_kg is not None:
        fields.append(Text(30, extra_y, f"NET {label.net_weight_kg:f} kg", 30))
        extra_y += 40
    if label.gtin:
        fields.append(Text(30, extra_y, f"GTIN {label.gtin}", 30))
    if label.reference:
        fields.append(QrCode(620, 20, label.reference, magnification=4))
    return Label(tuple(fields), width_dots=WIDTH_DOTS, length_dots=LENGTH_DOTS)


def sample_label(title: str, stamp: str, reference: str) -> ItemLabel:
    """The label ``jxc device test-label`` prints: plain ASCII every printer can draw."""
    return ItemLabel(
        item_code=f"TEST-{stamp}",
        quantity=Decimal(1),
        unit="EA",
        site_id=title,
        name="jxc test label",
        reference=reference,
    )
