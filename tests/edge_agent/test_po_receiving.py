"""Receiving against open PO lines at the edge: feed cache, matching, quantity, quarantine.

The station is driven with hand-made scans and a stub scale (the drivers and twins have
their own tests); the ledger is a real SQLite file, so received-so-far, the duplicate-carton
record and the label queue are what the agent would write.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_drivers.scanners import Scan
from device_drivers.scanners.base import Gs1Data
from edge_agent.catalog import CachedItem, Catalog, KnownBarcode, LineState, OpenLine
from edge_agent.ledger import Ledger
from edge_agent.stations import po_match
from edge_agent.stations.errors import ChoiceNeededError
from edge_agent.stations.receiving import ReceivingStation
from jxc.feed import ChangePage

TODAY = date(2026, 12, 4)
GTIN = "09506000134376"
CASE_GTIN = "19506000134373"


class StubReading:
    def __init__(self, kg: Decimal) -> None:
        self.kg = kg

    def net_in(self, unit: str, *, places: int | None = None) -> Decimal:
        assert unit == "kg"
        return self.kg


class StubScale:
    """A scale whose next stable reading the test sets."""

    def __init__(self) -> None:
        self.kg = Decimal(0)

    def read_stable(self, timeout: float) -> StubReading:
        return StubReading(self.kg)


def page(*changes: tuple[str, str, str, dict[str, Any] | None], start: int = 1) -> ChangePage:
    body = [
        {"version": v, "entity": e, "key": k, "op": op, "data": d}
        for v, (e, k, op, d) in enumerate(
            [(e, k, "delete" if d is None else "upsert", d) for e, k, op, d in changes],
            start=start,
        )
    ]
    return ChangePage.model_validate(
        {"site_id": "S01", "changes": body, "next_cursor": start + len(body) - 1, "has_more": False}
    )


def po_line(
    po_id: str,
    line_no: int,
    qty: str,
    item: str = "AMOX-500",
    supplier: str = "SUP1",
    under: str = "0",
) -> Any:
    return (
        "po_line",
        f"{po_id} {line_no}",
        "upsert",
        {
            "po_id": po_id,
            "line_no": line_no,
            "supplier": supplier,
            "item_code": item,
            "qty": qty,
            "uom": "BOX",
            "order_qty": qty,
            "order_uom": "BOX",
            "over_tolerance": "10",
            "under_tolerance": under,
        },
    )


ITEM = (
    "item",
    "AMOX-500",
    "upsert",
    {
        "item_code": "AMOX-500",
        "uom": "BOX",
        "expiry_tracked": True,
        "lot_tracked": True,
        "min_remaining_days": 180,
        "unit_weight": "0.250",
        "weight_tolerance": "3",
    },
)
BARCODES = [
    ("barcode", GTIN, "upsert", {"barcode": GTIN, "item_code": "AMOX-500"}),
    (
        "barcode",
        CASE_GTIN,
        "upsert",
        {"barcode": CASE_GTIN, "item_code": "AMOX-500", "qty_per": "20", "uom": "CASE"},
    ),
]


def gs1_scan(
    gtin: str = GTIN,
    *,
    lot: str = "L1",
    expiry: date | None = TODAY + timedelta(days=400),
    count: int | None = 20,
    sscc: str | None = None,
    serial: str | None = None,
    net: Decimal | None = None,
) -> Scan:
    gs1 = Gs1Data(
        gtin=gtin,
        lot=lot,
        expiry=expiry,
        serial=serial,
        sscc=sscc,
        count=count,
        net_weight_kg=net,
        elements={},
    )
    return Scan("dock-1", b"x", f"01{gtin}", "]C1", gs1, datetime.now(UTC))


def key_scan(data: str) -> Scan:
    return Scan("dock-1", data.encode(), data, None, None, datetime.now(UTC))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    yield opened
    opened.close()


@pytest.fixture
def station(ledger: Ledger) -> ReceivingStation:
    catalog = Catalog(ledger)
    catalog.apply(page(ITEM, *BARCODES, po_line("PO1", 1, "100")))
    scale = StubScale()
    return ReceivingStation(
        ledger,
        catalog,
        location="RECEIVING",
        uom="EA",
        scale=scale,  # type: ignore[arg-type]
        purchase_orders=True,
        quarantine_location="QUAR",
        label_printer="printer-1",
    )


def weigh(station: ReceivingStation, kg: str) -> None:
    station.scale.kg = Decimal(kg)  # type: ignore[union-attr]


# --- the feed cache ------------------------------------------------------------------


def test_po_lines_are_cached_and_tombstones_remove_them(ledger: Ledger) -> None:
    catalog = Catalog(ledger)
    catalog.apply(page(ITEM, po_line("PO1", 1, "100"), po_line("PO1", 2, "5")))
    assert [(line.po_id, line.line_no, line.qty) for line in catalog.open_lines()] == [
        ("PO1", 1, Decimal(100)),
        ("PO1", 2, Decimal(5)),
    ]
    assert catalog.counts()["po_lines"] == 2
    catalog.apply(page(("po_line", "PO1 2", "delete", None), start=4))
    assert [line.line_no for line in catalog.open_lines("AMOX-500")] == [1]
    assert catalog.open_lines("AMOX-500", supplier="OTHER") == []
    item = catalog.item("AMOX-500")
    assert item == CachedItem("AMOX-500", "BOX", True, True, 180, Decimal("0.250"), Decimal(3))


def test_migration_refetches_the_feed_for_the_new_item_fields(tmp_path: Path) -> None:
    """Items cached before migration 8 lack unit weight and shelf life: the cursor is reset."""
    import sqlite3  # noqa: PLC0415

    from edge_agent import migrations  # noqa: PLC0415

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(conn, target=7)
    conn.execute("INSERT INTO sync_cursor VALUES ('master-data', 42, 'x')")
    migrations.migrate(conn)
    assert conn.execute("SELECT COUNT(*) FROM sync_cursor").fetchone() == (0,)
    conn.close()


# --- pure decisions --------------------------------------------------------------------


def line(
    qty: str = "100", received: str = "0", over: str = "10", under: str = "0", po_id: str = "PO1"
) -> OpenLine:
    return OpenLine(
        po_id,
        1,
        "SUP1",
        "AMOX-500",
        Decimal(qty),
        "BOX",
        Decimal(over),
        Decimal(under),
        None,
        Decimal(received),
    )


AMOX = CachedItem("AMOX-500", "BOX", True, True, 180, Decimal("0.250"), Decimal(3))


def test_quantity_from_count_pack_unit_or_weight() -> None:
    unit = KnownBarcode(GTIN, "AMOX-500", Decimal(1), "BOX", True)
    case = KnownBarcode(CASE_GTIN, "AMOX-500", Decimal(20), "BOX", True, "CASE")
    assert po_match.quantity(unit, AMOX, count=12, weight_kg=None) == 12
    assert po_match.quantity(case, AMOX, count=3, weight_kg=None) == 60
    assert po_match.quantity(case, AMOX, count=None, weight_kg=Decimal(99)) == 20
    assert po_match.quantity(unit, AMOX, count=None, weight_kg=Decimal("2.51")) == 10
    assert po_match.quantity(unit, AMOX, count=None, weight_kg=None) == 1


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"weight_kg": Decimal("5.00")}, None),
        ({"weight_kg": Decimal("4.80")}, "short_weight"),  # 4 % under
        ({"weight_kg": Decimal("5.20")}, "over_weight"),
        ({"weight_kg": Decimal("5.00"), "label_net_kg": Decimal("5.5")}, "label_weight"),
        ({"expiry": TODAY - timedelta(days=1)}, "expired"),
        ({"expiry": TODAY + timedelta(days=100)}, "short_dated"),
        ({"expiry": None}, "no_expiry"),
    ],
)
def test_check_reasons(kwargs: dict[str, Any], code: str | None) -> None:
    args: dict[str, Any] = {"expiry": TODAY + timedelta(days=365)} | kwargs
    verdict = po_match.check(AMOX, line(), Decimal(20), today=TODAY, **args)
    assert (verdict.code if verdict else None) == code


@given(
    ordered=st.integers(1, 500),
    received=st.integers(0, 600),
    qty=st.integers(1, 100),
    over=st.integers(0, 50),
)
def test_over_receipt_exactly_beyond_the_tolerance(
    ordered: int, received: int, qty: int, over: int
) -> None:
    target = line(str(ordered), str(received), str(over))
    verdict = po_match.check(
        AMOX, target, Decimal(qty), today=TODAY, expiry=TODAY + timedelta(days=999)
    )
    beyond = Decimal(received + qty) > Decimal(ordered) * (1 + Decimal(over) / 100)
    assert (verdict is not None and verdict.code == "over_receipt") == beyond


def test_candidates_prefer_lines_still_short() -> None:
    done = line("10", "10")
    short = OpenLine(
        "PO2", 1, "SUP1", "AMOX-500", Decimal(5), "BOX", Decimal(0), Decimal(0), None, Decimal(0)
    )
    assert po_match.candidates([done, short]) == [short]
    assert po_match.candidates([done]) == [done]
    assert po_match.candidates([]) == []


@given(
    ordered=st.integers(1, 500),
    received=st.integers(0, 700),
    under=st.integers(0, 99),
    over=st.integers(0, 50),
)
def test_a_line_is_complete_within_its_under_tolerance(
    ordered: int, received: int, under: int, over: int
) -> None:
    """The edge's rule is central's: a line with at least its quantity less
    ``under_tolerance`` percent is received; exact in Decimals at every boundary."""
    target = line(str(ordered), str(received), str(over), str(under))
    floor = Decimal(ordered) * (1 - Decimal(under) / 100)
    ceiling = Decimal(ordered) * (1 + Decimal(over) / 100)
    got = Decimal(received)
    expected = (
        LineState.OVER
        if got > ceiling
        else LineState.COMPLETE
        if got >= ordered
        else LineState.SHORT_WITHIN_TOLERANCE
        if got >= floor and got > 0
        else LineState.OPEN
    )
    assert target.state is expected
    assert target.floor == floor


def test_a_line_short_within_tolerance_is_no_longer_preferred() -> None:
    within = line("100", "96", under="5")
    beyond = line("100", "94", under="5", po_id="PO2")
    fresh = line("40", "0", po_id="PO3")
    assert within.state is LineState.SHORT_WITHIN_TOLERANCE
    assert beyond.state is LineState.OPEN
    assert po_match.candidates([within, beyond, fresh]) == [beyond, fresh]
    # only lines complete enough left: they are still receivable (the rest may come)
    assert po_match.candidates([within, line("10", "10")]) == [within]
    assert "complete within -5% (4 short" in po_match.line_note(within)
    assert po_match.line_note(beyond).endswith("6 open")


# --- the station -----------------------------------------------------------------------


def test_carton_booked_against_its_line_with_lot_and_expiry(station: ReceivingStation) -> None:
    weigh(station, "5.02")
    event = station.receive(gs1_scan(sscc="003123456789012347"), today=TODAY)
    assert (event.doc_type, event.doc_id, event.doc_line) == ("purchase_order", "PO1", 1)
    assert (event.qty, event.uom, event.lot, event.location) == (
        Decimal(20),
        "BOX",
        "L1",
        "RECEIVING",
    )
    assert event.expiry == TODAY + timedelta(days=400)
    assert station.display.startswith("OK 20 BOX AMOX-500")
    assert station.catalog.open_lines()[0].received == 20
    assert [r.seq for r in station.ledger.labels()] == [event.seq]


def test_same_sscc_twice_is_booked_once(station: ReceivingStation) -> None:
    weigh(station, "5.00")
    first = station.receive(gs1_scan(sscc="003123456789012347"), today=TODAY)
    again = station.receive(gs1_scan(sscc="003123456789012347"), today=TODAY)
    assert again.event_id == first.event_id
    assert station.ledger.counts().last_seq == 1
    assert len(station.ledger.labels()) == 1
    assert "already booked" in station.display
    serial_a = station.receive(gs1_scan(serial="S-9", count=1), today=TODAY)
    serial_b = station.receive(gs1_scan(serial="S-9", count=1), today=TODAY)
    assert serial_a.event_id == serial_b.event_id


@pytest.mark.parametrize(
    ("scan_kwargs", "kg", "reason"),
    [
        ({}, "4.50", "short weight"),
        ({"expiry": TODAY - timedelta(days=3)}, "5.00", "expired"),
        ({"expiry": TODAY + timedelta(days=30)}, "5.00", "short-dated"),
        ({"count": 20, "net": Decimal("6.0")}, "5.00", "differs from the label"),
    ],
)
def test_quarantine_keeps_the_line_and_says_why(
    station: ReceivingStation, scan_kwargs: dict[str, Any], kg: str, reason: str
) -> None:
    weigh(station, kg)
    event = station.receive(gs1_scan(**scan_kwargs), today=TODAY)
    assert event.location == "QUAR"
    assert event.doc_id == "PO1"
    assert reason in station.display
    assert reason in (event.ref or "")
    report = station.receiving_report(TODAY)
    assert report["quarantined"][0]["reason"] in station.display  # type: ignore[index]


def test_the_quarantine_list_survives_a_restart(station: ReceivingStation) -> None:
    """A new station on the same ledger (the agent restarted) shows the same notes."""
    weigh(station, "4.50")
    station.receive(gs1_scan(), today=TODAY)
    station.receive(gs1_scan("04012345678901"), today=TODAY)
    before = station.receiving_report(TODAY)["quarantined"]
    again = ReceivingStation(
        station.ledger,
        Catalog(station.ledger),
        location="RECEIVING",
        uom="EA",
        purchase_orders=True,
        quarantine_location="QUAR",
    )
    after = again.receiving_report(TODAY)["quarantined"]
    assert [n["code"] for n in after] == ["unknown_item", "short_weight"]  # type: ignore[index]
    assert after == before


def test_over_receipt_goes_to_quarantine(station: ReceivingStation) -> None:
    weigh(station, "25.00")
    ok = station.receive(gs1_scan(count=100), today=TODAY)
    assert ok.location == "RECEIVING"
    weigh(station, "5.00")
    over = station.receive(gs1_scan(count=20), today=TODAY)
    assert over.location == "QUAR"
    assert over.doc_id == "PO1"
    assert "over-receipt" in station.display


def test_unknown_item_and_no_open_line_go_to_quarantine(station: ReceivingStation) -> None:
    unknown = station.receive(gs1_scan("04012345678901"), today=TODAY)
    assert (unknown.location, unknown.doc_id) == ("QUAR", None)
    assert "unknown item" in station.display
    station.catalog.apply(page(("po_line", "PO1 1", "delete", None), start=10))
    weigh(station, "5.00")
    event = station.receive(gs1_scan(), today=TODAY)
    assert (event.location, event.doc_id) == ("QUAR", None)
    assert "no open PO line" in station.display


def test_two_lines_the_operator_picks(station: ReceivingStation) -> None:
    station.catalog.apply(page(po_line("PO2", 3, "40", supplier="SUP2"), start=20))
    weigh(station, "5.00")
    with pytest.raises(ChoiceNeededError, match=r"1\) PO1/1 .*2\) PO2/3"):
        station.receive(gs1_scan(), today=TODAY)
    assert station.ledger.counts().last_seq == 0
    event = station.receive(key_scan("2"), today=TODAY)
    assert (event.doc_id, event.doc_line, event.qty) == ("PO2", 3, Decimal(20))
    # A known supplier narrows the match: no choice needed.
    station.supplier = "SUP1"
    assert station.receive(gs1_scan(), today=TODAY).doc_id == "PO1"


def test_case_barcode_books_its_pack_unit(station: ReceivingStation) -> None:
    weigh(station, "5.00")
    event = station.receive(gs1_scan(CASE_GTIN, count=None), today=TODAY)
    assert (event.qty, event.location) == (Decimal(20), "RECEIVING")


def test_jxc_edge_receive_shows_open_lines_and_today(
    station: ReceivingStation, tmp_path: Path
) -> None:
    from typer.testing import CliRunner  # noqa: PLC0415

    from edge_agent.cli import app  # noqa: PLC0415

    weigh(station, "5.00")
    station.receive(gs1_scan(lot="LOT-CLI"))  # today, for real: the CLI shows today's
    station.ledger.close()
    site = tmp_path / "site.toml"
    site.write_text(
        '[site]\nid = "S01"\n[central]\nurl = "http://127.0.0.1:9"\n'
        'site_secret_file = "s.secret"\n[ledger]\npath = "edge.db"\n'
    )
    (tmp_path / "s.secret").write_text("x" * 40)
    result = CliRunner().invoke(app, ["receive", "--config", str(site)])
    assert result.exit_code == 0, result.output
    assert "PO1" in result.output
    assert "AMOX-500" in result.output
    assert "LOT-CLI" in result.output
    assert "PO1/1" in result.output


def test_a_failed_write_keeps_neither_the_event_nor_the_carton(station: ReceivingStation) -> None:
    """The carton's record, its event, outbox row and label are one transaction: a failure
    at the last statement (the label) leaves none of them, and the rescan books it once."""
    conn = station.ledger.conn
    conn.execute(
        "CREATE TRIGGER fail_label BEFORE INSERT ON label_queue"
        " BEGIN SELECT RAISE(ABORT, 'power cut'); END"
    )
    weigh(station, "5.00")
    carton = gs1_scan(sscc="003123456789012347")
    with pytest.raises(Exception, match="power cut"):
        station.receive(carton, today=TODAY)
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
    assert conn.execute("SELECT COUNT(*) FROM received_cartons").fetchone() == (0,)
    conn.execute("DROP TRIGGER fail_label")
    first = station.receive(carton, today=TODAY)
    assert station.receive(carton, today=TODAY).event_id == first.event_id
    assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    assert conn.execute("SELECT COUNT(*) FROM label_queue").fetchone() == (1,)


def test_the_station_uses_the_under_tolerance_from_the_feed(station: ReceivingStation) -> None:
    """PO1/1 (100 BOX) arrives with a 5 % under-receipt tolerance: 96 BOX complete it at
    the edge as at central; the display says so, the status page shows it, and the next
    carton of the item goes to the line still open without asking the operator."""
    station.catalog.apply(
        page(po_line("PO1", 1, "100", under="5"), po_line("PO2", 1, "50"), start=30)
    )
    assert {(x.po_id, x.under_tolerance) for x in station.catalog.open_lines()} == {
        ("PO1", Decimal(5)),
        ("PO2", Decimal(0)),
    }
    weigh(station, "20.00")
    with pytest.raises(ChoiceNeededError):  # both lines open: the operator picks
        station.receive(gs1_scan(count=80), today=TODAY)
    first = station.receive(key_scan("1"), today=TODAY)
    assert (first.doc_id, first.qty) == ("PO1", Decimal(80))
    assert station.display.endswith("PO1/1 80/100 BOX, 20 open")
    weigh(station, "4.00")
    with pytest.raises(ChoiceNeededError):  # 80 < 95: PO1 is still short beyond 5 %
        station.receive(gs1_scan(count=16, lot="L2"), today=TODAY)
    second = station.receive(key_scan("1"), today=TODAY)
    assert (second.doc_id, second.location) == ("PO1", "RECEIVING")
    assert station.display.endswith(
        "PO1/1 96/100 BOX, complete within -5% (4 short, accepted as complete)"
    )
    lines = {x["po_id"]: x for x in station.receiving_report(TODAY)["open_lines"]}  # type: ignore[union-attr]
    assert (lines["PO1"]["state"], lines["PO1"]["complete_at"]) == ("short_within_tolerance", "95")
    assert lines["PO2"]["state"] == "open"
    weigh(station, "5.00")
    third = station.receive(gs1_scan(count=20, lot="L3"), today=TODAY)  # no choice asked
    assert (third.doc_id, third.qty) == ("PO2", Decimal(20))
    assert station.pending_choice is None
    # the rest of PO1 arriving late still books against it (PO2 is then complete)
    station.catalog.apply(page(po_line("PO2", 1, "20"), start=40))
    weigh(station, "1.00")
    late = station.receive(gs1_scan(count=4, lot="L4"), today=TODAY)
    assert (late.doc_id, late.location) == ("PO1", "RECEIVING")
    assert station.display.endswith("PO1/1 100/100 BOX, complete")
