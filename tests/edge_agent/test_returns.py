"""The returns station at the edge: authorised customer returns from the feed, received
carton by carton (selected by the RA number or by the one return that expects the carton),
refusals with their reason on the display line, the over-receipt site policy, the
tombstone, a restart, and the events queued for central exactly once.

The ledger is a real file; scans are what the scanner drivers hand the station.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog, read_page
from edge_agent.ledger import Ledger
from edge_agent.migrations import migrate
from edge_agent.stations.returns import ReturnsStation
from jxc.contract import EventKind, LedgerEvent
from simulators.scanner import GS
from tests.edge_agent.site_kit import (
    cli_json,
    offline_site_file,
    refuses_a_scanner_in_two,
    shown_in_turn,
    wait_connected,
)
from tests.edge_agent.site_kit import (
    feed_page as page,
)
from tests.edge_agent.site_kit import (
    refused_scan as refused,
)

GTIN = "09506000134352"
TODAY = datetime.now(UTC).date()


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def rma(return_id: str, *lines: dict[str, Any]) -> dict[str, Any]:
    return {
        "return_id": return_id,
        "so_id": "SO000001",
        "customer": "C1",
        "version": 1,
        "lines": list(lines),
    }


RA1 = rma(
    "RA000001",
    {"line_no": 1, "item_code": "PILL", "lot": "L1", "expiry": str(day(90)), "qty": "6",
     "uom": "EA"},
    {"line_no": 2, "item_code": "TEA", "qty": "2.5", "uom": "kg"},
)  # fmt: skip


MASTER: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("item", "PILL", "upsert", {"item_code": "PILL", "uom": "EA", "expiry_tracked": True}),
    ("barcode", GTIN, "upsert", {"barcode": GTIN, "item_code": "PILL"}),
    ("barcode", "CASE6", "upsert", {"barcode": "CASE6", "item_code": "PILL", "qty_per": "6"}),
    ("item", "TEA", "upsert", {"item_code": "TEA", "uom": "kg"}),
    ("barcode", "TEA1", "upsert", {"barcode": "TEA1", "item_code": "TEA"}),
    ("item", "SOAP", "upsert", {"item_code": "SOAP", "uom": "EA"}),
    ("barcode", "SOAP1", "upsert", {"barcode": "SOAP1", "item_code": "SOAP"}),
    ("location", "RET", "upsert", {"code": "RET", "level": "zone", "kind": "quarantine"}),
    ("customer_return", "RA000001", "upsert", RA1),
]


def gs1_scan(lot: str, expiry: date, count: int = 1) -> Scan:
    data = f"01{GTIN}10{lot}{GS}17{expiry:%y%m%d}37{count}"
    return Scan("ret-1", data.encode(), data, "]C1", parse_gs1(data), datetime.now(UTC))


def plain(data: str) -> Scan:
    return Scan("ret-1", data.encode(), data, None, None, datetime.now(UTC))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(tmp_path / "S01.db", site_id="S01")
    Catalog(ledger).apply(page(*MASTER))
    yield ledger
    ledger.close()


def returned(ledger: Ledger) -> list[LedgerEvent]:
    return [event for event in ledger.events() if event.kind is EventKind.RETURN]


def test_a_return_is_received_carton_by_carton_into_the_returns_location(
    ledger: Ledger,
) -> None:
    station = ReturnsStation(ledger, Catalog(ledger), location="RET")
    station.on_scan(plain("RA000001"))
    assert station.display.startswith("RA000001 from C1 (SO000001): 2 line(s), 8.5 to receive")
    refused(station, plain("SOAP1"), "SOAP is on no line of RA000001", "set it aside")
    refused(station, gs1_scan("L9", day(90)), "REFUSED lot L9", "authorises PILL lot L1")
    refused(station, plain("QTY x"), "no number")
    refused(station, plain("NOPE"), "no return, no QTY and no item")

    event = station.on_scan(gs1_scan("L1", day(90), 4))
    assert isinstance(event, LedgerEvent)
    assert station.display == "OK 4 EA PILL lot L1 into RET (RA000001 line 1: 4/6 EA)"
    assert (event.kind, event.location, event.qty, event.lot, event.expiry) == (
        EventKind.RETURN, "RET", Decimal(4), "L1", day(90),
    )  # fmt: skip
    assert (event.doc_type, event.doc_id, event.doc_line) == ("customer_return", "RA000001", 1)

    # A case of 6 is more than the 2 the line still expects: refused, nothing booked.
    refused(station, plain("CASE6"), "more than RA000001 line 1 still expects (2 EA of 6)")
    # Loose tea by weight: QTY first, then the item barcode; the line's lot-less.
    station.on_scan(plain("QTY 2.5"))
    tea = station.on_scan(plain("TEA1"))
    assert isinstance(tea, LedgerEvent)
    assert (tea.item, tea.qty, tea.uom, tea.lot, tea.doc_line) == (
        "TEA", Decimal("2.5"), "kg", None, 2,
    )  # fmt: skip
    # A plain barcode of PILL takes the lot the line authorises.
    station.on_scan(plain("QTY 2"))
    pill = station.on_scan(plain(GTIN))
    assert isinstance(pill, LedgerEvent)
    assert (pill.lot, pill.expiry, pill.qty) == ("L1", day(90), Decimal(2))

    station.on_scan(plain("DONE"))
    assert station.display == "DONE RA000001: every line as authorised"
    assert station.return_id is None
    assert [e.seq for e in ledger.pending(100)] == [1, 2, 3], "queued for central once each"
    assert (station.refused, station.warnings) == (5, 0)
    assert station.report()["open"] == ["RA000001"]


def test_a_carton_finds_its_return_and_over_receipt_is_warned_by_site_policy(
    ledger: Ledger,
) -> None:
    catalog = Catalog(ledger)
    station = ReturnsStation(ledger, catalog, location="RET", over="warn")
    # No return selected: the one open return that expects PILL lot L1 is taken.
    station.on_scan(gs1_scan("L1", day(90), 5))
    assert station.return_id == "RA000001"
    station.on_scan(plain("CASE6"))
    assert station.display.startswith("WARNING more than authorised (6 EA)")
    assert "(RA000001 line 1: 11/6 EA)" in station.display
    assert station.warnings == 1
    assert [e.qty for e in returned(ledger)] == [Decimal(5), Decimal(6)]

    # A second return that also expects PILL: RA000001 has all it expects, so a carton
    # scanned alone goes to the one that still expects some.
    ra2 = rma("RA000002", {"line_no": 1, "item_code": "PILL", "qty": "3", "uom": "EA"})
    catalog.apply(page(("customer_return", "RA000002", "upsert", ra2), start=len(MASTER) + 1))
    fresh = ReturnsStation(ledger, catalog, location="RET")
    fresh.on_scan(plain("QTY 3"))
    fresh.on_scan(plain(GTIN))
    assert fresh.display == "OK 3 EA PILL lot - into RET (RA000002 line 1: 3/3 EA)"
    fresh.on_scan(plain("DONE"))
    refused(fresh, plain(GTIN), "no open return expects PILL")
    # Several returns expect TEA (RA000001 too): the clerk must say which.
    ra3 = rma("RA000003", {"line_no": 1, "item_code": "TEA", "qty": "1", "uom": "kg"})
    ra4 = rma("RA000004", {"line_no": 1, "item_code": "TEA", "qty": "1", "uom": "kg"})
    catalog.apply(
        page(
            ("customer_return", "RA000003", "upsert", ra3),
            ("customer_return", "RA000004", "upsert", ra4),
            start=len(MASTER) + 2,
        )
    )
    refused(fresh, plain("TEA1"), "3 returns expect TEA", "RA000003", "scan the return's number")


def test_a_tombstoned_return_is_received_no_more_and_a_restart_keeps_what_was_received(
    ledger: Ledger,
) -> None:
    catalog = Catalog(ledger)
    station = ReturnsStation(ledger, catalog, location="RET")
    station.on_scan(plain("RA000001"))
    station.on_scan(gs1_scan("L1", day(90), 4))

    # A restart: a new station on the same ledger counts what the ledger received.
    again = ReturnsStation(ledger, catalog, location="RET")
    again.on_scan(plain("RA000001"))
    assert again.display.endswith("4.5 to receive; scan the cartons")
    refused(again, plain("CASE6"), "still expects (2 EA of 6)")

    # Central received it (or closed it): the tombstone removes it from the cache.
    catalog.apply(page(("customer_return", "RA000001", "delete", None), start=len(MASTER) + 1))
    refused(again, gs1_scan("L1", day(90)), "RA000001 was received at the office or closed")
    assert again.return_id is None
    refused(again, plain("RA000001"), "no return")
    assert catalog.customer_returns() == []
    assert len(returned(ledger)) == 1


def test_an_edge_before_returns_skips_the_kind_and_the_migration_pulls_the_feed_again(
    tmp_path: Path,
) -> None:
    """Its own feed kind: an agent that does not know it skips it (its cursor moves on);
    ledger migration 15, the one that caches returns, resets the cursor so the whole feed
    is pulled again and the returns skipped before are cached."""
    raw = page(*MASTER).model_dump_json().replace('"customer_return"', '"a_later_kind"')
    known, skipped = read_page(raw.encode())
    assert (skipped, len(known.changes)) == (1, len(MASTER) - 1)

    path = tmp_path / "S01.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=14) == 14
    conn.execute("INSERT INTO sync_cursor VALUES ('master-data', 42, '2026-12-01T00:00:00')")
    conn.close()
    ledger = Ledger(path, site_id="S01")  # migrates to the latest
    try:
        catalog = Catalog(ledger)
        assert catalog.cursor() == 0
        catalog.apply(page(*MASTER))
        assert [each.return_id for each in catalog.customer_returns()] == ["RA000001"]
        assert catalog.counts()["customer_returns"] == 1
    finally:
        ledger.close()


def test_the_agent_sends_the_returns_scanners_scans_to_the_returns_station(
    tmp_path: Path,
) -> None:
    """A whole agent in this process, central unreachable: the returns scanner (a twin on
    a pty) receives a carton of a return into the site file's returns location; the status
    page shows the station."""
    from edge_agent.agent import EdgeAgent  # noqa: PLC0415
    from edge_agent.config import load_site_config  # noqa: PLC0415
    from simulators.scanner import ScannerTwin  # noqa: PLC0415

    with ScannerTwin(link=tmp_path / "ret-1") as twin:
        site_file = offline_site_file(
            tmp_path, '[returns]\nscanners = ["ret-1"]\nlocation = "RET"', {"ret-1": twin.link}
        )
        agent = EdgeAgent(load_site_config(site_file))
        agent.catalog.apply(page(*MASTER))
        agent.start()
        try:
            wait_connected(agent)
            station = agent.return_stations["ret-1"]
            shown_in_turn(
                twin,
                station,
                (
                    ("RA000001", None, "RA000001 from C1"),
                    (
                        f"01{GTIN}10L1{GS}17{day(90):%y%m%d}376",
                        "]C1",
                        "OK 6 EA PILL lot L1 into RET",
                    ),
                    ("DONE", None, "DONE RA000001: line 2 TEA 0/2.5 kg"),
                ),
            )
            got = returned(agent.ledger)
            assert [(e.qty, e.location, e.doc_id, e.doc_line) for e in got] == [
                (Decimal(6), "RET", "RA000001", 1)
            ]
            assert agent.status()["returns"]["ret-1"]["open"] == ["RA000001"]
        finally:
            agent.stop()


def test_a_returns_scanner_serves_no_other_station() -> None:
    refuses_a_scanner_in_two("transfers", "returns")


def test_the_cli_lists_the_sites_returns_from_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    station = ReturnsStation(ledger, Catalog(ledger), location="RET")
    station.on_scan(gs1_scan("L1", day(90), 4))
    assert cli_json(tmp_path, ledger, "returns") == {
        "site_id": "S01",
        "returns": [
            {
                "return_id": "RA000001",
                "so_id": "SO000001",
                "customer": "C1",
                "lines": [
                    {"line_no": 1, "item": "PILL", "authorised": "6", "received": "4", "uom": "EA"},
                    {
                        "line_no": 2,
                        "item": "TEA",
                        "authorised": "2.5",
                        "received": "0",
                        "uom": "kg",
                    },
                ],
            }
        ],
    }
