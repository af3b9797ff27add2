"""The scan-station base as a new station meets it: a toy station of a few lines gets the
refusal bookkeeping, the location rules, the carton lookup and the status page that
picking, transfers and counts share."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations.errors import StationError
from edge_agent.stations.scan_station import UNSELLABLE_KINDS, Place, ScanStation, read_carton
from jxc.feed import ChangePage

GTIN = "09506000134352"
GS = "\x1d"


class ToyRefusedError(StationError):
    """The toy station's refusal."""


@dataclass(slots=True)
class ToyStation(ScanStation):
    """Selects a pick list, a location, then takes cartons of active items."""

    taken: int = 0

    refusal = ToyRefusedError
    logger = logging.getLogger("tests.toy_station")
    refused_event = "toy scan refused"
    select_first = "scan a pick list first"
    selected_key = "pick_list"

    def take(self, scan: Scan, data: str, today: date) -> object:
        if scan.gs1 is None and (listed := self.catalog.pick_list(data)) is not None:
            self.select(listed.so_id)
            return listed
        if (place := self.place_of(scan, data)) is not None:
            return self.at(place)
        self.still_open(self.catalog.pick_list, "was closed")
        carton, known = self.active_item(scan)
        self.taken += carton.count
        self.display = f"OK {known.item_code} lot {carton.lot} x{carton.count}"
        return carton

    def check_place(self, place: Place) -> None:
        self.bar_place(place, UNSELLABLE_KINDS, "taken from")

    def figures(self) -> dict[str, object]:
        return {"taken": self.taken}


def page(*changes: tuple[str, str, dict[str, object] | None], start: int = 1) -> ChangePage:
    """Upserts, or tombstones where the data is None, numbered from ``start``."""
    return ChangePage.model_validate(
        {
            "site_id": "S01",
            "changes": [
                {
                    "version": n,
                    "entity": entity,
                    "key": key,
                    "data": data,
                    "op": "upsert" if data is not None else "delete",
                }
                for n, (entity, key, data) in enumerate(changes, start=start)
            ],
            "next_cursor": start + len(changes) - 1,
            "has_more": False,
        }
    )


PICK_LIST = {"so_id": "SO000001", "customer": "CUS-1", "so_version": 1, "lines": []}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    Catalog(opened).apply(
        page(
            ("item", "PILL", {"item_code": "PILL", "uom": "EA"}),
            ("barcode", GTIN, {"barcode": GTIN, "item_code": "PILL"}),
            ("item", "OLD", {"item_code": "OLD", "uom": "EA", "active": False}),
            ("barcode", "OLD-CODE", {"barcode": "OLD-CODE", "item_code": "OLD"}),
            ("location", "A-01", {"code": "A-01", "level": "bin", "kind": "storage"}),
            ("location", "Q", {"code": "Q", "level": "zone", "kind": "quarantine"}),
            ("pick_list", "SO000001", PICK_LIST),
        )
    )
    yield opened
    opened.close()


def plain(data: str) -> Scan:
    return Scan("toy-1", data.encode(), data, None, None, datetime.now(UTC))


def gs1(data: str) -> Scan:
    return Scan("toy-1", data.encode(), data, "]C1", parse_gs1(data), datetime.now(UTC))


def test_a_refusal_is_counted_shown_logged_and_raised(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    station = ToyStation(ledger, Catalog(ledger))
    with caplog.at_level(logging.INFO, "tests.toy_station"), pytest.raises(ToyRefusedError):
        station.on_scan(plain(GTIN))
    assert station.display == "REFUSED: scan a pick list first"
    assert station.refused == 1
    assert [(r.getMessage(), r.reason) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("toy scan refused", "REFUSED: scan a pick list first")
    ]


def test_locations_of_the_tree_unknown_codes_and_barred_kinds(ledger: Ledger) -> None:
    station = ToyStation(ledger, Catalog(ledger))
    assert station.on_scan(plain("A-01")) == "A-01"
    assert station.display == "at A-01: scan a carton"
    assert station.on_scan(plain("SHELF-9")) == "SHELF-9"
    assert station.display == "at SHELF-9 (not in the site's location tree): scan a carton"
    with pytest.raises(ToyRefusedError, match="location Q is a quarantine location"):
        station.on_scan(plain("Q"))
    assert station.location == "SHELF-9"
    # A GTIN-shaped code is no place (a misread item), nor is a known item's barcode.
    assert station.place_of(plain("5901234123457"), "5901234123457") is None
    assert station.place_of(plain("OLD-CODE"), "OLD-CODE") is None


def test_cartons_are_read_looked_up_and_refused_when_inactive(ledger: Ledger) -> None:
    station = ToyStation(ledger, Catalog(ledger))
    station.on_scan(plain("SO000001"))
    station.on_scan(plain("A-01"))
    carton = station.on_scan(gs1(f"01{GTIN}10L7{GS}3712"))
    assert station.display == "OK PILL lot L7 x12"
    assert carton == read_carton(station.catalog, gs1(f"01{GTIN}10L7{GS}3712"))
    with pytest.raises(ToyRefusedError, match="REFUSED: OLD-CODE is no active item here"):
        station.on_scan(plain("OLD-CODE"))
    assert station.report() == {
        "display": "REFUSED: OLD-CODE is no active item here",
        "pick_list": "SO000001",
        "location": "A-01",
        "refused": 1,
        "taken": 12,
    }


def test_a_document_central_closed_is_deselected(ledger: Ledger) -> None:
    station = ToyStation(ledger, Catalog(ledger))
    station.on_scan(plain("SO000001"))
    station.on_scan(plain("A-01"))
    Catalog(ledger).apply(page(("pick_list", "SO000001", None), start=8))
    with pytest.raises(ToyRefusedError, match="REFUSED: SO000001 was closed"):
        station.on_scan(plain(GTIN))
    assert station.selected is None
    with pytest.raises(ToyRefusedError, match="scan a pick list first"):
        station.on_scan(plain(GTIN))
