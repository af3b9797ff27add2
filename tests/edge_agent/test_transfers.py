"""The transfer stations at the edge: transfer orders from the feed, sending FEFO from the
lots the ledger holds (expired refused, a later-expiring lot refused or warned by site
policy), receiving what arrives, and ``DONE`` booking one side's events, the last marked.

The ledger is a real file; scans are what the scanner drivers hand the station.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.transfers import TransferStation
from jxc.contract import EventKind
from jxc.feed import TRANSFER_COMPLETE, ChangePage
from simulators.scanner import GS
from tests.edge_agent.site_kit import (
    cli_json,
    feed_page,
    offline_site_file,
    refuses_a_scanner_in_two,
    shown_in_turn,
    wait_connected,
)
from tests.edge_agent.site_kit import (
    refused_scan as refused,
)

GTIN = "09506000134352"
TODAY = datetime.now(UTC).date()


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def page(site_id: str, *more: tuple[str, str, str, dict[str, Any] | None]) -> ChangePage:
    """Item PILL (GTIN above, and a case of 6), TEA, storage A1, quarantine Q, and transfer
    TR000001 from S01 to S02 of 20 PILL; then ``more`` changes."""
    transfer = {
        "transfer_id": "TR000001",
        "from_site": "S01",
        "to_site": "S02",
        "version": 2,
        "lines": [{"line_no": 1, "item_code": "PILL", "qty": "20", "uom": "EA"}],
    }
    changes: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("item", "PILL", "upsert", {"item_code": "PILL", "uom": "EA", "expiry_tracked": True}),
        ("barcode", GTIN, "upsert", {"barcode": GTIN, "item_code": "PILL"}),
        ("barcode", "CASE6", "upsert", {"barcode": "CASE6", "item_code": "PILL", "qty_per": "6"}),
        ("item", "TEA", "upsert", {"item_code": "TEA", "uom": "kg"}),
        ("barcode", "TEA1", "upsert", {"barcode": "TEA1", "item_code": "TEA"}),
        ("location", "A1", "upsert", {"code": "A1", "level": "zone", "kind": "storage"}),
        ("location", "Q", "upsert", {"code": "Q", "level": "zone", "kind": "quarantine"}),
        ("transfer", "TR000001", "upsert", transfer),
        *more,
    ]
    return feed_page(*changes, site_id=site_id)


def gs1_scan(lot: str, expiry: date, count: int = 1) -> Scan:
    data = f"01{GTIN}10{lot}{GS}17{expiry:%y%m%d}37{count}"
    return Scan("tr-1", data.encode(), data, "]C1", parse_gs1(data), datetime.now(UTC))


def plain(data: str) -> Scan:
    return Scan("tr-1", data.encode(), data, None, None, datetime.now(UTC))


def open_site(tmp_path: Path, site_id: str) -> Ledger:
    ledger = Ledger(tmp_path / f"{site_id}.db", site_id=site_id)
    Catalog(ledger).apply(page(site_id))
    return ledger


@pytest.fixture
def sender(tmp_path: Path) -> Iterator[Ledger]:
    """S01 holding PILL at A1: L1 (10, in 30 days), L2 (10, in 60), OLD (5, expired)."""
    ledger = open_site(tmp_path, "S01")
    for lot, offset, qty in (("L2", 60, "10"), ("L1", 30, "10"), ("OLD", -2, "5")):
        ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT, item="PILL", lot=lot, expiry=day(offset),
                location="A1", qty=Decimal(qty), uom="EA",
            )
        )  # fmt: skip
    yield ledger
    ledger.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Ledger]:
    ledger = open_site(tmp_path, "S02")
    yield ledger
    ledger.close()


def test_sending_is_fefo_refuses_expired_and_later_lots_and_books_marked_events(
    sender: Ledger,
) -> None:
    station = TransferStation(sender, Catalog(sender))
    refused(station, plain("A1"), "scan a transfer")
    station.on_scan(plain("TR000001"))
    assert "to S02" in station.display
    refused(station, gs1_scan("L1", day(30)), "location")
    refused(station, plain("Q"), "quarantine")
    station.on_scan(plain("A1"))
    refused(station, gs1_scan("OLD", day(-2)), "EXPIRED")
    refused(station, gs1_scan("L2", day(60)), "after lot L1", "take lot L1")
    refused(station, plain("TEA1"), "TEA is on no line")
    taken = station.on_scan(gs1_scan("L1", day(30), 4))
    assert [(t.lot, t.qty) for t in taken] == [("L1", Decimal(4))]  # type: ignore[attr-defined]
    # A case of 6 with no lot on it: the first-expiring lots, split (L1 has 6 left).
    taken = station.on_scan(plain("CASE6"))
    assert [(t.lot, t.qty) for t in taken] == [("L1", Decimal(6))]  # type: ignore[attr-defined]
    taken = station.on_scan(plain("CASE6"))
    assert [(t.lot, t.qty) for t in taken] == [("L2", Decimal(6))]  # type: ignore[attr-defined]
    # 16 of 20 scanned: a case of 6 is more than the line still needs.
    refused(station, plain("CASE6"), "more than line 1 still needs (4 EA)")
    assert sender.counts().last_seq == 3, "nothing is booked before DONE"

    # A restart loses no scan: a new station on the same ledger carries on.
    station = TransferStation(sender, Catalog(sender))
    station.on_scan(plain("TR000001"))
    station.on_scan(plain("A1"))
    done = station.on_scan(plain("DONE"))
    assert station.display == "DONE TR000001 SHIPPED: line 1 PILL 16/20 EA"
    events = done.events  # type: ignore[attr-defined]
    assert [(e.kind, e.lot, e.qty, e.doc_id, e.doc_line, e.ref) for e in events] == [
        (EventKind.TRANSFER_OUT, "L1", Decimal(-10), "TR000001", 1, None),
        (EventKind.TRANSFER_OUT, "L2", Decimal(-6), "TR000001", 1, TRANSFER_COMPLETE),
    ]
    assert events[0].expiry == day(30)
    assert sender.counts().pending == 5
    refused(station, plain("TR000001"), "shipped here already")
    assert station.open_transfers() == []


def test_a_later_lot_is_taken_with_a_warning_by_site_policy(sender: Ledger) -> None:
    station = TransferStation(sender, Catalog(sender), later_expiry="warn")
    station.on_scan(plain("TR000001"))
    station.on_scan(plain("A1"))
    taken = station.on_scan(gs1_scan("L2", day(60), 2))
    assert [(t.lot, t.qty) for t in taken] == [("L2", Decimal(2))]  # type: ignore[attr-defined]
    assert station.display.startswith("WARNING lot L2 expires")
    assert station.warnings == 1
    refused(station, gs1_scan("OLD", day(-2)), "EXPIRED")  # never, whatever the policy


def test_too_little_unexpired_stock_is_refused_and_nothing_scanned_cannot_end(
    sender: Ledger,
) -> None:
    sender.append(
        EventDraft(
            kind=EventKind.ISSUE, item="PILL", lot="L1", expiry=day(30), location="A1",
            qty=Decimal(-8), uom="EA",
        )
    )  # fmt: skip
    station = TransferStation(sender, Catalog(sender))
    refused(station, plain("DONE"), "scan a transfer")
    station.on_scan(plain("TR000001"))
    refused(station, plain("DONE"), "nothing is scanned")
    station.on_scan(plain("A1"))
    taken = station.on_scan(plain("CASE6"))
    assert [(t.lot, t.qty) for t in taken] == [  # type: ignore[attr-defined]
        ("L1", Decimal(2)),
        ("L2", Decimal(4)),
    ]
    station.on_scan(plain("CASE6"))
    # 12 scanned, 8 left on the line, but only the expired lot is left at A1.
    refused(station, plain("CASE6"), "holds 0 EA of PILL in unexpired lots")


def test_receiving_takes_what_arrives_and_books_marked_transfer_in(receiver: Ledger) -> None:
    station = TransferStation(receiver, Catalog(receiver))
    station.on_scan(plain("TR000001"))
    assert "from S01" in station.display
    station.on_scan(plain("B9"))  # not in the tree: stock is where the edge says
    refused(station, plain("TEA1"), "on no line")
    station.on_scan(gs1_scan("L1", day(30), 10))
    station.on_scan(gs1_scan("L9", day(90), 12))  # a lot that never left: still a fact
    assert station.display.startswith("WARNING more than ordered")
    done = station.on_scan(plain("DONE"))
    assert station.display == "DONE TR000001 RECEIVED: line 1 PILL 22/20 EA"
    assert [
        (e.kind, e.location, e.lot, e.qty, e.ref)
        for e in done.events  # type: ignore[attr-defined]
    ] == [
        (EventKind.TRANSFER_IN, "B9", "L1", Decimal(10), None),
        (EventKind.TRANSFER_IN, "B9", "L9", Decimal(12), TRANSFER_COMPLETE),
    ]


def test_a_cancelled_transfer_stops_the_station(receiver: Ledger) -> None:
    station = TransferStation(receiver, Catalog(receiver))
    station.on_scan(plain("TR000001"))
    station.on_scan(plain("A1"))
    Catalog(receiver).apply(
        ChangePage.model_validate(
            {
                "site_id": "S02",
                "changes": [
                    {"version": 20, "entity": "transfer", "key": "TR000001", "op": "delete"}
                ],
                "next_cursor": 20,
                "has_more": False,
            }
        )
    )
    refused(station, gs1_scan("L1", day(30)), "cancelled or closed")
    assert Catalog(receiver).transfers() == []


def test_the_agent_sends_the_transfer_scanners_scans_to_the_transfer_station(
    tmp_path: Path,
) -> None:
    """A whole agent in this process, central unreachable: the transfer scanner (a twin on
    a pty) ships a carton of the transfer; the status page shows the station."""
    from edge_agent.agent import EdgeAgent  # noqa: PLC0415
    from edge_agent.config import load_site_config  # noqa: PLC0415
    from simulators.scanner import ScannerTwin  # noqa: PLC0415

    with ScannerTwin(link=tmp_path / "tr-1") as twin:
        site_file = offline_site_file(
            tmp_path, '[transfers]\nscanners = ["tr-1"]', {"tr-1": twin.link}
        )
        agent = EdgeAgent(load_site_config(site_file))
        agent.catalog.apply(page("S01"))
        agent.ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT, item="PILL", lot="L1", expiry=day(30),
                location="A1", qty=Decimal(20), uom="EA",
            )
        )  # fmt: skip
        agent.start()
        try:
            wait_connected(agent)
            station = agent.transfer_stations["tr-1"]
            shown_in_turn(
                twin,
                station,
                (
                    ("TR000001", None, "TR000001 to S02"),
                    ("A1", None, "at A1"),
                    (
                        f"01{GTIN}10L1{GS}17{day(30):%y%m%d}3720",
                        "]C1",
                        "OK PILL 20 lot L1",
                    ),
                    ("DONE", None, "DONE TR000001 SHIPPED: every line as ordered"),
                ),
            )
            sent = [e for e in agent.ledger.events() if e.kind == EventKind.TRANSFER_OUT]
            assert [(e.qty, e.lot, e.ref) for e in sent] == [
                (Decimal(-20), "L1", TRANSFER_COMPLETE)
            ]
            assert agent.status()["transfers"]["tr-1"]["open"] == []
        finally:
            agent.stop()


def test_a_scanner_serves_one_station_only() -> None:
    refuses_a_scanner_in_two("counter", "transfers")


def test_the_cli_lists_the_sites_transfers_from_the_ledger(sender: Ledger, tmp_path: Path) -> None:
    station = TransferStation(sender, Catalog(sender))
    station.on_scan(plain("TR000001"))
    station.on_scan(plain("A1"))
    station.on_scan(gs1_scan("L1", day(30), 4))
    assert cli_json(tmp_path, sender, "transfers") == {
        "site_id": "S01",
        "transfers": [
            {
                "transfer_id": "TR000001",
                "side": "send",
                "other_site": "S02",
                "done": False,
                "lines": [{"line_no": 1, "item": "PILL", "qty": "20", "scanned": "4", "uom": "EA"}],
            }
        ],
    }
