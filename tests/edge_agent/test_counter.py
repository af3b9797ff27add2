"""The store's counter at the edge: a basket scanned on a real scanner driver (its twin on a
pty), sold FEFO from the lots the edge holds, committed with a receipt number from a gapless
per-site counter, refunded by receipt number, the day's takings read without central.

The counter's gaplessness is a property over receipts that crash at any step of their
transaction.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from device_drivers.scanners.serial_line import SerialLineScanner, SerialScannerConfig
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations import counter as till
from edge_agent.stations.counter import CounterRefusedError, CounterStation
from jxc.contract import EventKind
from jxc.feed import ChangePage
from jxc.retail import PosRef, parse_ref
from simulators.scanner import GS, ScannerTwin
from tests.edge_agent.site_kit import offline_site_file, shown_in_turn, wait_connected
from tests.patience import patience_timeout

GTIN = "09506000134352"
SOAP = "6901234567892"
TODAY = datetime.now(UTC).date()
PRICES = {"PILL": Decimal("12.5"), "SOAP": Decimal("3.3")}  # as the site file gives them


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def catalog_page() -> ChangePage:
    changes = [
        ("item", "PILL", {"item_code": "PILL", "uom": "EA", "expiry_tracked": True}),
        ("barcode", GTIN, {"barcode": GTIN, "item_code": "PILL"}),
        ("item", "SOAP", {"item_code": "SOAP", "uom": "EA"}),
        ("barcode", SOAP, {"barcode": SOAP, "item_code": "SOAP"}),
        ("item", "GUM", {"item_code": "GUM", "uom": "EA"}),
        ("barcode", "4006381333931", {"barcode": "4006381333931", "item_code": "GUM"}),
    ]
    return ChangePage.model_validate(
        {
            "site_id": "S01",
            "changes": [
                {"version": n, "entity": entity, "key": key, "op": "upsert", "data": data}
                for n, (entity, key, data) in enumerate(changes, start=1)
            ],
            "next_cursor": len(changes),
            "has_more": False,
        }
    )


def stock(ledger: Ledger, lot: str, expiry: date, qty: str, item: str = "PILL") -> None:
    ledger.append(
        EventDraft(
            kind=EventKind.RECEIPT,
            item=item,
            lot=lot,
            expiry=expiry,
            location="SHOP",
            qty=Decimal(qty),
            uom="EA",
        )
    )


def carton(lot: str, expiry: date, count: int) -> str:
    return f"01{GTIN}10{lot}{GS}17{expiry:%y%m%d}30{count}"


def plain(data: str) -> Scan:
    return Scan("till-1", data.encode(), data, None, None, datetime.now(UTC))


def gs1(data: str) -> Scan:
    return Scan("till-1", data.encode(), data, "]C1", parse_gs1(data), datetime.now(UTC))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    Catalog(opened).apply(catalog_page())
    yield opened
    opened.close()


def station_on(ledger: Ledger) -> CounterStation:
    return CounterStation(ledger, Catalog(ledger), location="SHOP", prices=PRICES)


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[tuple[ScannerTwin, SerialLineScanner]]:
    twin = ScannerTwin(tmp_path / "till-1")
    driver = SerialLineScanner(SerialScannerConfig(device_id="till-1", port=tmp_path / "till-1"))
    assert driver.read_scan(timeout=0.2) is None  # opens the port: input before it is stale
    yield twin, driver
    driver.close()
    twin.close()


def test_a_basket_sold_fefo_refunded_and_the_day_totalled(
    ledger: Ledger, scanner: tuple[ScannerTwin, SerialLineScanner]
) -> None:
    twin, driver = scanner
    stock(ledger, "OLD", day(-1), "5")  # expired: never sold
    stock(ledger, "L2", day(60), "10")
    stock(ledger, "L1", day(20), "3")
    station = station_on(ledger)

    def scan(data: str, symbology: str | None = None) -> object:
        twin.send(data, symbology)
        read = driver.read_scan(timeout=patience_timeout(5))
        assert read is not None
        try:
            return station.on_scan(read, today=TODAY)
        except CounterRefusedError:
            return None

    assert scan("4006381333931") is None
    assert station.display == "REFUSED: GUM has no price at this store; ask the office"
    assert scan(carton("OLD", day(-1), 1), "]C1") is None
    assert station.display.startswith(f"REFUSED lot OLD of PILL: EXPIRED (expires {day(-1)})")
    assert scan("PAY cash") is None
    assert "the basket is empty" in station.display
    scan("QTY 4")
    scan(GTIN)  # 4 PILL, no lot on the code: FEFO at PAY
    assert station.display == "PILL 4 EA x 12.5 = 50.00; total 50.00"
    scan(SOAP)
    scan(SOAP)
    scan("VOID")
    scan("QTY 1.5")
    scan(SOAP)  # 1.5 x 3.3 = 4.95
    assert station.total() == Decimal("58.25")
    assert scan("PAY bitcoin") is None
    assert "PAY with one of cash, card, mobile, voucher" in station.display
    receipt = scan("PAY card")
    assert isinstance(receipt, till.Receipt)
    assert (receipt.code, receipt.total, receipt.events) == ("S01-R00000001", Decimal("58.25"), 4)
    assert station.display == "PAID S01-R00000001 card 58.25"
    sales = [e for e in ledger.events() if e.kind is EventKind.SALE]
    assert [(e.item, e.lot, e.qty, e.doc_id, e.doc_line) for e in sales] == [
        ("PILL", "L1", Decimal(-3), "S01-R00000001", 1),  # first to expire, unexpired
        ("PILL", "L2", Decimal(-1), "S01-R00000001", 1),
        ("SOAP", None, Decimal(-1), "S01-R00000001", 2),
        ("SOAP", None, Decimal("-1.5"), "S01-R00000001", 3),
    ]
    assert [parse_ref(e.ref) for e in sales[:3]] == [
        PosRef("card", Decimal("12.5")),
        PosRef("card", Decimal("12.5")),
        PosRef("card", Decimal("3.3")),
    ]
    assert all(e.doc_type == "retail_receipt" and e.location == "SHOP" for e in sales)

    # 9 PILL left in L2 and 5 expired in OLD: 10 is refused, nothing booked, no number taken.
    scan("QTY 10")
    scan(GTIN)
    assert scan("PAY cash") is None
    assert station.display.startswith("REFUSED: PILL has 9 EA in unexpired lots at SHOP, not 10")
    assert "5 EA EXPIRED: not sold" in station.display
    scan("CLEAR")
    scan(carton("L2", day(60), 2), "]C1")  # a GS1 carton names its own lot
    second = scan("PAY mobile")
    assert isinstance(second, till.Receipt)
    assert second.code == "S01-R00000002"

    assert scan("REFUND S01-R00000001 9") is None
    assert station.display == "REFUSED: S01-R00000001 has no line 9"
    part = scan("REFUND S01-R00000001 3")  # the weighed soap only
    assert isinstance(part, till.Receipt)
    assert (part.code, part.total) == ("S01-R00000003", Decimal("4.95"))
    assert scan("REFUND S01-R00000001 3") is None
    assert station.display == "REFUSED: line 3 of S01-R00000001 is refunded in full already"
    refund = scan("REFUND S01-R00000001")  # the rest
    assert isinstance(refund, till.Receipt)
    assert (refund.code, refund.kind, refund.payment, refund.total) == (
        "S01-R00000004",
        "refund",
        "card",
        Decimal("53.30"),
    )
    returns = [e for e in ledger.events() if e.kind is EventKind.RETURN]
    assert [(e.item, e.lot, e.qty, e.doc_id, e.doc_line, e.ref) for e in returns] == [
        ("SOAP", None, Decimal("1.5"), "S01-R00000001", 3, "pos card 3.3 refund S01-R00000003"),
        ("PILL", "L1", Decimal(3), "S01-R00000001", 1, "pos card 12.5 refund S01-R00000004"),
        ("PILL", "L2", Decimal(1), "S01-R00000001", 1, "pos card 12.5 refund S01-R00000004"),
        ("SOAP", None, Decimal(1), "S01-R00000001", 2, "pos card 3.3 refund S01-R00000004"),
    ]
    assert scan("REFUND S01-R00000001") is None
    assert station.display == "REFUSED: S01-R00000001 is refunded in full already"
    assert scan("REFUND S01-R00000003") is None  # a refund slip is not refunded
    assert till.last_number(ledger) == 4

    totals = station.day_totals(datetime.now(UTC).date())
    assert (totals.sales, totals.refunds) == (2, 2)
    assert totals.by_payment == {"card": Decimal(0), "mobile": Decimal(25)}
    assert totals.net == Decimal(25)
    assert station.report()["last_receipt"] == 4


class CrashError(Exception):
    """The power failing at one step of a receipt's transaction."""


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["sale", "refund"]), st.sampled_from([None, "numbered", "booked"])
        ),
        max_size=8,
    )
)
def test_receipt_numbers_stay_gapless_and_unique_when_receipts_crash(
    steps: list[tuple[str, str | None]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "edge.db", site_id="S01")
        try:
            Catalog(ledger).apply(catalog_page())
            stock(ledger, "L1", day(30), "1000")
            sold: list[str] = []
            made = 0
            for kind, crash_at in steps:
                station = station_on(ledger)  # a fresh process after each crash
                if kind == "refund" and not sold:
                    continue

                def fault(step: str, crash_at: str | None = crash_at) -> None:
                    if step == crash_at:
                        raise CrashError(step)

                station.fault = fault
                before = ledger.counts().last_seq
                try:
                    if kind == "sale":
                        station.on_scan(gs1(carton("L1", day(30), 1)))
                        receipt = station.on_scan(plain("PAY cash"))
                        assert isinstance(receipt, till.Receipt)
                        sold.append(receipt.code)
                    else:
                        station.on_scan(plain(f"REFUND {sold.pop()}"))
                except CrashError:
                    assert ledger.counts().last_seq == before  # nothing of it was written
                    if kind == "refund":
                        continue  # the receipt stays refundable; it was popped, fine
                    continue
                made += 1
            numbers = [r.number for r in till.receipts(ledger)]
            assert numbers == list(range(1, made + 1))
            assert till.last_number(ledger) == made
            codes = [r.code for r in till.receipts(ledger)]
            assert len(set(codes)) == made
            events = ledger.events()
            counter_events = [e for e in events if e.doc_type == "retail_receipt"]
            assert sum(r.events for r in till.receipts(ledger)) == len(counter_events)
        finally:
            ledger.close()


SELLER = textwrap.dedent(
    """
    import sys
    from decimal import Decimal
    from pathlib import Path
    from edge_agent.catalog import Catalog
    from edge_agent.ledger import Ledger
    from edge_agent.stations.counter import CounterStation
    from tests.edge_agent.test_counter import SOAP, catalog_page, plain

    ledger = Ledger(Path(sys.argv[1]), site_id="S01")
    Catalog(ledger).apply(catalog_page())
    station = CounterStation(ledger, Catalog(ledger), location="SHOP", prices={"SOAP": Decimal(3)})
    while True:
        station.on_scan(plain(SOAP))
        print(station.on_scan(plain("PAY cash")).number, flush=True)
    """
)


def test_a_kill_9_mid_sale_leaves_no_gap_and_no_reuse(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    root = Path(__file__).resolve().parents[2]
    seller = subprocess.Popen(
        [sys.executable, "-c", SELLER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert seller.stdout is not None
        seen = [int(seller.stdout.readline()) for _ in range(25)]  # mid-stream, then kill
        seller.send_signal(signal.SIGKILL)
        seller.wait(timeout=patience_timeout(10))
    finally:
        if seller.poll() is None:
            seller.kill()
    assert seen == list(range(1, 26))
    ledger = Ledger(path, site_id="S01")
    try:
        made = till.receipts(ledger)
        last = till.last_number(ledger)
        assert last >= 25
        assert [receipt.number for receipt in made] == list(range(1, last + 1))
        assert all(receipt.events == 1 for receipt in made)  # each with its sale, once
        assert len([e for e in ledger.events() if e.kind is EventKind.SALE]) == last
        station = station_on(ledger)
        station.on_scan(plain(SOAP))
        receipt = station.on_scan(plain("PAY cash"))
        assert isinstance(receipt, till.Receipt)
        assert receipt.number == last + 1
    finally:
        ledger.close()


def test_migration_11_adds_the_counter(tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415

    from edge_agent.migrations import migrate  # noqa: PLC0415

    conn = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
    try:
        assert migrate(conn, target=10) == 10
        assert migrate(conn, target=11) == 11
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"receipt_counter", "receipts", "receipt_lines"} <= tables
        assert conn.execute("SELECT last_number FROM receipt_counter").fetchall() == [(0,)]
    finally:
        conn.close()


def test_the_site_file_names_counter_scanners_it_has_and_prices() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from edge_agent.config import SiteConfig  # noqa: PLC0415

    devices = {"scanners": [{"id": "till-1", "driver": "serial"}]}
    good = SiteConfig.model_validate(
        {
            "site": {"id": "S01"},
            "counter": {"scanners": ["till-1"], "prices": {"PILL": "12.50"}},
            "devices": devices,
        }
    )
    assert good.counter.prices == {"PILL": Decimal("12.5")}
    assert good.counter.location == "SHOP"
    with pytest.raises(ValidationError, match=r"counter\.scanner is 'till-2'"):
        SiteConfig.model_validate(
            {"site": {"id": "S01"}, "counter": {"scanners": ["till-2"]}, "devices": devices}
        )
    with pytest.raises(ValidationError, match="must not be negative"):
        SiteConfig.model_validate({"site": {"id": "S01"}, "counter": {"prices": {"A": "-1"}}})
    with pytest.raises(ValidationError, match="not a JSON number"):
        SiteConfig.model_validate({"site": {"id": "S01"}, "counter": {"prices": {"A": 1.5}}})


def test_the_agent_sends_the_till_scanners_scans_to_the_counter(tmp_path: Path) -> None:
    """A whole agent in this process, central unreachable: the till's scans sell at the
    site file's price, the dock scanner's still receive; the status page shows the day."""
    from edge_agent.agent import EdgeAgent  # noqa: PLC0415
    from edge_agent.config import load_site_config  # noqa: PLC0415
    from tests.patience import wait_for  # noqa: PLC0415

    with (
        ScannerTwin(link=tmp_path / "scanner-1") as dock,
        ScannerTwin(link=tmp_path / "till-1") as till_scanner,
    ):
        site_file = offline_site_file(
            tmp_path,
            '[counter]\nscanners = ["till-1"]\nprices = { SOAP = "3.30" }',
            {"scanner-1": dock.link, "till-1": till_scanner.link},
        )
        agent = EdgeAgent(load_site_config(site_file))
        agent.catalog.apply(catalog_page())
        agent.start()
        try:
            wait_connected(agent)
            station = agent.tills["till-1"]
            shown_in_turn(
                till_scanner,
                station,
                (
                    ("QTY 2", None, "QTY 2"),
                    (SOAP, None, "SOAP 2 EA x 3.3 = 6.60"),
                    ("PAY cash", None, "PAID S01-R00000001 cash 6.60"),
                ),
            )
            dock.send(SOAP)
            assert wait_for(lambda: any(e.kind == "receipt" for e in agent.ledger.events()), 10)
            sold = [e for e in agent.ledger.events() if e.kind == "sale"]
            assert [(e.device_id, e.qty, e.ref) for e in sold] == [
                ("till-1", Decimal(-2), "pos cash 3.3")
            ]
            shown_today = agent.status()["counter"]["till-1"]["today"]
            assert shown_today == {
                "sales": 1,
                "refunds": 0,
                "by_payment": {"cash": "6.60"},
                "net": "6.60",
            }
        finally:
            agent.stop()


def test_the_day_totals_are_read_from_the_ledger_file_by_the_cli(tmp_path: Path) -> None:
    import json  # noqa: PLC0415

    from typer.testing import CliRunner  # noqa: PLC0415

    from edge_agent.cli import app  # noqa: PLC0415

    site_file = tmp_path / "site.toml"
    site_file.write_text(f'[site]\nid = "S01"\n[ledger]\npath = "{tmp_path / "edge.db"}"\n')
    ledger = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        Catalog(ledger).apply(catalog_page())
        station = station_on(ledger)
        for payment in ("cash", "mobile", "cash"):
            station.on_scan(plain(SOAP))
            station.on_scan(plain(f"PAY {payment}"))
        station.on_scan(plain("REFUND S01-R00000002"))
    finally:
        ledger.close()
    result = CliRunner().invoke(app, ["counter", "totals", "-c", str(site_file)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "site_id": "S01",
        "day": datetime.now(UTC).date().isoformat(),
        "sales": 3,
        "refunds": 1,
        "by_payment": {"cash": "6.60", "mobile": "0.00"},
        "net": "6.60",
    }
    result = CliRunner().invoke(app, ["counter", "totals", "-c", str(site_file), "--day", "x"])
    assert result.exit_code == 2
    assert "no date" in result.stderr
