"""Station errors are the stations' own: each says what happened, that nothing was booked,
and what the person at the dock should do, and none of them is a ledger error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from device_drivers.scales import MtSicsScale, MtSicsScaleConfig
from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger, LedgerError
from edge_agent.stations.errors import (
    BarcodeError,
    MisreadBarcodeError,
    StationError,
    UnknownBarcodeError,
    WeighingError,
)
from edge_agent.stations.receiving import ReceivingStation
from jxc.feed import ChangePage
from simulators.scale import MtSicsScaleTwin
from tests.patience import patience_timeout

RICE = {"item_code": "RICE-BULK", "name": "Jasmine rice, bulk", "uom": "kg", "active": True}
RICE_SACK = {"barcode": "09506000134376", "item_code": "RICE-BULK", "qty_per": "1"}
OLD = {"item_code": "OLD-MUG", "name": "Discontinued mug", "uom": "EA", "active": False}
OLD_CODE = {"barcode": "5901234123457", "item_code": "OLD-MUG", "qty_per": "1"}


def scan(code: str) -> Scan:
    return Scan(
        device_id="dock-1",
        raw=code.encode(),
        data=code,
        symbology=None,
        gs1=None,
        received_at=datetime.now(UTC),
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    changes = [
        {"version": n, "entity": entity, "key": key, "op": "upsert", "data": data}
        for n, (entity, key, data) in enumerate(
            [
                ("item", "RICE-BULK", RICE),
                ("barcode", RICE_SACK["barcode"], RICE_SACK),
                ("item", "OLD-MUG", OLD),
                ("barcode", OLD_CODE["barcode"], OLD_CODE),
            ],
            start=1,
        )
    ]
    Catalog(opened).apply(
        ChangePage.model_validate(
            {"site_id": "S01", "changes": changes, "next_cursor": 4, "has_more": False}
        )
    )
    yield opened
    opened.close()


@pytest.fixture
def scale_twin(tmp_path: Path) -> Iterator[MtSicsScaleTwin]:
    twin = MtSicsScaleTwin(tmp_path / "scale-1", weight=Decimal("25.04"), unit="kg")
    yield twin
    twin.close()


@pytest.fixture
def scale(scale_twin: MtSicsScaleTwin, tmp_path: Path) -> Iterator[MtSicsScale]:
    driver = MtSicsScale(
        MtSicsScaleConfig(
            device_id="scale-1", address=tmp_path / "scale-1", reply_timeout=patience_timeout(0.3)
        )
    )
    yield driver
    driver.close()


def refused(station: ReceivingStation, code: str, ledger: Ledger) -> StationError:
    """The station's error for ``code``, having checked that nothing reached the ledger."""
    before = ledger.counts().last_seq
    with pytest.raises(StationError) as caught:
        station.on_scan(scan(code))
    assert not isinstance(caught.value, LedgerError)
    assert "nothing was booked" in str(caught.value)
    assert ledger.counts().last_seq == before
    return caught.value


def test_station_errors_are_not_ledger_errors() -> None:
    for error in (BarcodeError, UnknownBarcodeError, MisreadBarcodeError, WeighingError):
        assert issubclass(error, StationError)
        assert not issubclass(error, LedgerError)
    assert not issubclass(StationError, LedgerError)


def test_an_unknown_code_says_who_can_add_it(ledger: Ledger) -> None:
    strict = ReceivingStation(
        ledger, Catalog(ledger), location="DOCK-1", uom="EA", unknown_barcodes="refuse"
    )
    error = refused(strict, "NEW-THING", ledger)
    assert isinstance(error, UnknownBarcodeError)
    assert str(error) == (
        "barcode NEW-THING is not known at this site; nothing was booked. Ask the office to"
        " add it to the item master data, then scan it again"
    )


def test_an_inactive_item_is_named(ledger: Ledger) -> None:
    station = ReceivingStation(ledger, Catalog(ledger), location="DOCK-1", uom="EA")
    error = refused(station, OLD_CODE["barcode"], ledger)
    assert isinstance(error, UnknownBarcodeError)
    assert "item OLD-MUG, which is inactive" in str(error)


def test_a_misread_says_scan_again(ledger: Ledger) -> None:
    station = ReceivingStation(ledger, Catalog(ledger), location="DOCK-1", uom="EA")
    error = refused(station, "9506000134353", ledger)
    assert isinstance(error, MisreadBarcodeError)
    assert "wrong check digit in EAN-13 9506000134353" in str(error)
    assert "scan it again" in str(error)


def test_a_scale_that_does_not_settle_says_let_it_settle(
    ledger: Ledger, scale: MtSicsScale, scale_twin: MtSicsScaleTwin
) -> None:
    station = ReceivingStation(
        ledger,
        Catalog(ledger),
        location="DOCK-1",
        uom="EA",
        scale=scale,
        weigh_timeout_s=patience_timeout(0.3),
    )
    scale_twin.wobble(patience_timeout(5.0))
    error = refused(station, RICE_SACK["barcode"], ledger)
    assert isinstance(error, WeighingError)
    assert str(error).startswith("RICE-BULK: no stable weight")
    assert "until it settles, then scan it again" in str(error)


def test_an_empty_scale_says_put_the_carton_on_it(
    ledger: Ledger, scale: MtSicsScale, scale_twin: MtSicsScaleTwin
) -> None:
    station = ReceivingStation(ledger, Catalog(ledger), location="DOCK-1", uom="EA", scale=scale)
    scale_twin.set_weight(Decimal(0), "kg")
    error = refused(station, RICE_SACK["barcode"], ledger)
    assert isinstance(error, WeighingError)
    assert "the scale shows 0" in str(error)
    assert "Put the carton on the scale" in str(error)
