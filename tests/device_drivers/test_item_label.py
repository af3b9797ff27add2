"""The language-neutral label model: what no printer could carry is refused up front."""

from __future__ import annotations

import datetime
from decimal import Decimal

import pytest

from device_drivers.printers import ItemLabel, LabelDataError, LabelJob, item_label_layout
from device_drivers.printers.zpl import Code128, QrCode, Text


def mug(**overrides: object) -> ItemLabel:
    fields: dict[str, object] = {
        "item_code": "MUG-01",
        "quantity": Decimal("12"),
        "unit": "EA",
        "site_id": "S1",
        "lot": "L7",
        "expiry": datetime.date(2027, 1, 31),
        "location": "DOCK-1",
        "seq": 5,
        "reference": "jxc:S1:5:abc",
    }
    fields.update(overrides)
    return ItemLabel(**fields)  # type: ignore[arg-type]


def test_layout_carries_what_the_station_printed_before() -> None:
    layout = item_label_layout(mug())
    texts = [f.text for f in layout.fields if isinstance(f, Text)]
    assert texts == ["MUG-01", "QTY 12 EA", "LOT L7   EXP 2027-01-31", "S1 #5  DOCK-1"]
    assert [f.data for f in layout.fields if isinstance(f, Code128)] == ["MUG-01"]
    assert [f.data for f in layout.fields if isinstance(f, QrCode)] == ["jxc:S1:5:abc"]


def test_optional_fields_add_lines() -> None:
    layout = item_label_layout(
        mug(name="Mug, white", net_weight_kg=Decimal("0.350"), gtin="09506000134352")
    )
    texts = [f.text for f in layout.fields if isinstance(f, Text)]
    assert texts[-3:] == ["Mug, white", "NET 0.350 kg", "GTIN 09506000134352"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity": 1.5}, "quantity must be a finite Decimal"),
        ({"quantity": Decimal("NaN")}, "quantity must be a finite Decimal"),
        ({"net_weight_kg": 0.35}, "net_weight_kg must be a finite Decimal"),
        ({"name": "two\nlines"}, "name must not contain control characters"),
        ({"lot": "L\x1b!?"}, "lot must not contain control characters"),
        ({"item_code": ""}, "item_code must not be empty"),
        ({"gtin": "12345"}, "gtin must be 8, 12, 13 or 14 digits"),
    ],
)
def test_labels_no_printer_could_print_are_refused(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(LabelDataError, match=message):
        mug(**overrides)


def test_job_ids_are_checked() -> None:
    with pytest.raises(LabelDataError, match="job id"):
        LabelJob("has space", mug())
