"""The site's master-data cache: pages applied with their cursor, codes mapped to items."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.scanners import Gs1Data, Scan
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.receiving import (
    MisreadBarcodeError,
    ReceivingStation,
    UnknownBarcodeError,
)
from jxc.feed import ChangePage


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


def page(changes: list[dict[str, Any]], *, has_more: bool = False) -> ChangePage:
    last = changes[-1]["version"] if changes else 0
    return ChangePage.model_validate(
        {"site_id": "S01", "changes": changes, "next_cursor": last, "has_more": has_more}
    )


TEA = {"item_code": "TEA-250", "name": "Green tea 250 g", "uom": "BOX"}
TEA_CASE = {"barcode": "09506000134352", "item_code": "TEA-250", "qty_per": "12"}
TEA_EACH = {"barcode": "5901234123457", "item_code": "TEA-250", "qty_per": "1"}


def feed_with_tea() -> ChangePage:
    return page(
        [
            {"version": 1, "entity": "item", "key": "TEA-250", "op": "upsert", "data": TEA},
            {
                "version": 2,
                "entity": "barcode",
                "key": TEA_CASE["barcode"],
                "op": "upsert",
                "data": TEA_CASE,
            },
            {
                "version": 3,
                "entity": "barcode",
                "key": TEA_EACH["barcode"],
                "op": "upsert",
                "data": TEA_EACH,
            },
        ]
    )


def scan(
    data: str,
    *,
    gtin: str | None = None,
    count: int | None = None,
    contents: bool = False,
    symbology: str | None = None,
) -> Scan:
    gs1 = None
    if gtin and contents:
        gs1 = Gs1Data(
            gtin=None,
            lot="L7",
            expiry=None,
            serial=None,
            sscc="106141412345678908",
            count=count,
            net_weight_kg=None,
            elements={},
            content_gtin=gtin,
        )
    elif gtin:
        gs1 = Gs1Data(
            gtin=gtin,
            lot="L7",
            expiry=date(2027, 1, 31),
            serial=None,
            sscc=None,
            count=count,
            net_weight_kg=None,
            elements={},
        )
    return Scan(
        device_id="dock-1",
        raw=data.encode(),
        data=data,
        symbology="]C1" if gs1 else symbology,
        gs1=gs1,
        received_at=datetime.now(UTC),
    )


def test_page_and_cursor_are_stored_together(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    assert catalog.cursor() == 0
    assert catalog.apply(feed_with_tea()) == 3
    assert catalog.cursor() == 3
    counted = {"items": 1, "barcodes": 2, "po_lines": 0}
    counted |= {
        "item_units": 0,
        "item_levels": 0,
        "locations": 0,
        "pick_lists": 0,
        "transfers": 0,
        "count_sessions": 0,
        "customer_returns": 0,
        "references": 0,
        "categories": 0,
    }
    assert catalog.counts() == counted
    catalog.apply(feed_with_tea())  # a page fetched again after a crash: harmless
    assert catalog.counts() == counted


def test_tombstone_removes_a_withdrawn_barcode(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    catalog.apply(feed_with_tea())
    catalog.apply(
        page([{"version": 4, "entity": "barcode", "key": TEA_EACH["barcode"], "op": "delete"}])
    )
    assert catalog.lookup(TEA_EACH["barcode"]) is None
    assert catalog.lookup(TEA_CASE["barcode"]) is not None
    assert catalog.cursor() == 4


def test_a_failed_page_leaves_cursor_and_cache_as_they_were(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    catalog.apply(feed_with_tea())
    broken = page(
        [
            {
                "version": 4,
                "entity": "barcode",
                "key": "X1",
                "op": "upsert",
                "data": {"barcode": "X1", "item_code": "TEA-250", "qty_per": "2"},
            },
            {
                "version": 5,
                "entity": "item",
                "key": "BAD",
                "op": "upsert",
                "data": {"item_code": "BAD", "uom": "EA", "surprise": True},
            },
        ]
    )
    with pytest.raises(ValueError, match="surprise"):
        catalog.apply(broken)
    assert catalog.cursor() == 3
    assert catalog.lookup("X1") is None, "half a page must not be applied"


def test_gtin_13_and_14_spellings_find_the_same_item(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    catalog.apply(feed_with_tea())
    assert catalog.lookup("9506000134352") is not None
    assert catalog.lookup("05901234123457") is not None


def test_case_barcode_books_item_code_and_pack_quantity(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    catalog.apply(feed_with_tea())
    station = ReceivingStation(ledger, catalog, location="DOCK-1", uom="EA")
    event = station.on_scan(scan("...", gtin=TEA_CASE["barcode"], count=3))
    assert (event.item, event.qty, event.uom, event.lot) == ("TEA-250", Decimal(36), "BOX", "L7")
    pallet = station.on_scan(scan("...", gtin=TEA_CASE["barcode"], count=2, contents=True))
    assert (pallet.item, pallet.qty) == ("TEA-250", Decimal(24)), "(02) with (37) books contents"
    single = station.on_scan(scan(TEA_EACH["barcode"]))
    assert (single.item, single.qty) == ("TEA-250", Decimal(1))


def test_unknown_code_is_booked_or_refused_as_the_site_chose(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    booking = ReceivingStation(ledger, catalog, location="DOCK-1", uom="EA")
    assert booking.on_scan(scan("NEW-THING")).item == "NEW-THING"
    strict = ReceivingStation(
        ledger, catalog, location="DOCK-1", uom="EA", unknown_barcodes="refuse"
    )
    with pytest.raises(UnknownBarcodeError, match="not known"):
        strict.on_scan(scan("NEW-THING"))
    assert ledger.counts().last_seq == 1, "a refused scan books nothing"
    assert strict.unknown_scans == 1


def check_digit(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def test_a_misread_ean_13_is_refused_not_booked_under_its_own_number(ledger: Ledger) -> None:
    """Typed in, or from a scanner that sends no symbology identifier: the driver could not
    tell it from any number, the station can, since it is about to take it for a GTIN."""
    catalog = Catalog(ledger)
    station = ReceivingStation(ledger, catalog, location="DOCK-1", uom="EA")
    with pytest.raises(MisreadBarcodeError) as caught:
        station.on_scan(scan("9506000134353"))  # 9506000134352 with its last digit misread
    assert "wrong check digit in EAN-13 9506000134353" in str(caught.value)
    assert "nothing was booked" in str(caught.value)
    assert ledger.counts().last_seq == 0
    assert (station.misread_scans, station.unknown_scans) == (1, 0)
    assert station.on_scan(scan("9506000134352")).item == "9506000134352"


@pytest.mark.parametrize("code", ["036000291453", "09506000134353", "9506000134353"])
def test_every_gtin_spelling_is_checked_strict_mode_too(ledger: Ledger, code: str) -> None:
    catalog = Catalog(ledger)
    strict = ReceivingStation(
        ledger, catalog, location="DOCK-1", uom="EA", unknown_barcodes="refuse"
    )
    with pytest.raises(MisreadBarcodeError, match="wrong check digit"):
        strict.on_scan(scan(code, symbology="]E0" if len(code) < 14 else None))
    assert strict.misread_scans == 1


def test_numbers_that_do_not_claim_to_be_gtins_are_booked_as_before(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    catalog.apply(
        page(
            [
                {"version": 1, "entity": "item", "key": "TEA-250", "op": "upsert", "data": TEA},
                {
                    "version": 2,
                    "entity": "barcode",
                    "key": "2000000000009",
                    "op": "upsert",
                    "data": {"barcode": "2000000000009", "item_code": "TEA-250", "qty_per": "1"},
                },
            ]
        )
    )
    station = ReceivingStation(ledger, catalog, location="DOCK-1", uom="EA")
    # A site's own code in its master data, check digit or not: the site says it is real.
    assert station.on_scan(scan("2000000000009")).item == "TEA-250"
    # Thirteen digits in Code 128 are an internal number, not a GTIN.
    assert station.on_scan(scan("1234567890123", symbology="]C0")).item == "1234567890123"
    # Eight digits without an identifier may be an item number as well as an EAN-8.
    assert station.on_scan(scan("10004567")).item == "10004567"
    assert station.misread_scans == 0


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.text("0123456789", min_size=11, max_size=13),
    digit=st.sampled_from("0123456789"),
)
def test_an_unknown_gtin_is_booked_exactly_when_its_check_digit_holds(
    ledger: Ledger, body: str, digit: str
) -> None:
    station = ReceivingStation(ledger, Catalog(ledger), location="DOCK-1", uom="EA")
    code = body + digit
    before = ledger.counts().last_seq
    if digit == check_digit(body):
        assert station.on_scan(scan(code)).item == code
        assert ledger.counts().last_seq == before + 1
    else:
        with pytest.raises(MisreadBarcodeError):
            station.on_scan(scan(code))
        assert ledger.counts().last_seq == before
        assert station.misread_scans == 1
