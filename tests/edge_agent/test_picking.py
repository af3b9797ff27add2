"""The picking station at the edge: pick lists from the feed, FEFO at the carton, swaps,
short picks, packing with SSCC-18 labels from a gapless per-site counter.

Scanner and printer are the real drivers against their twins (a pty, a TCP 9100 listener);
the ledger is a real file. The counter's gaplessness is a property over packs that crash
at any step of their transaction, and holds across a ``kill -9`` of a packing process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_drivers.printers import ZplPrinter, ZplPrinterConfig
from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import parse_gs1
from device_drivers.scanners.serial_line import SerialLineScanner, SerialScannerConfig
from edge_agent.catalog import Catalog
from edge_agent.ledger import Ledger
from edge_agent.stations import sscc as units
from edge_agent.stations.labels import LabelSpooler
from edge_agent.stations.picking import PickingStation, PickRefusedError
from edge_agent.stations.sscc import SsccConfig
from jxc.feed import ChangePage
from simulators.printer import ZplPrinterTwin
from simulators.scanner import GS, ScannerTwin
from tests.edge_agent.site_kit import offline_site_file, shown_in_turn, wait_connected
from tests.patience import patience_timeout

GTIN = "09506000134352"
TODAY = datetime.now(UTC).date()
GS1_ID = SsccConfig(extension_digit=3, company_prefix="0614141")


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def pick_list_page(so_id: str = "SO000001", *, qty: str = "20", each: str = "10") -> ChangePage:
    """Item PILL (GTIN above), a storage and a quarantine location, and a pick list of one
    line: 20 reserved as 10 of L1 (in 30 days) and 10 of L2 (in 60 days)."""
    changes = [
        ("item", "PILL", {"item_code": "PILL", "uom": "EA", "expiry_tracked": True}),
        ("barcode", GTIN, {"barcode": GTIN, "item_code": "PILL"}),
        ("location", "A-01", {"code": "A-01", "level": "bin", "kind": "storage"}),
        ("location", "Q", {"code": "Q", "level": "zone", "kind": "quarantine"}),
        (
            "pick_list",
            so_id,
            {
                "so_id": so_id,
                "customer": "CUS-1",
                "so_version": 2,
                "lines": [
                    {
                        "so_line": 1,
                        "item_code": "PILL",
                        "uom": "EA",
                        "qty": qty,
                        "lots": [
                            {"lot": "L1", "expiry": day(30).isoformat(), "qty": each},
                            {"lot": "L2", "expiry": day(60).isoformat(), "qty": each},
                        ],
                    }
                ],
            },
        ),
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


def carton(lot: str, expiry: date, count: int) -> str:
    """A GS1-128 read as a scanner sends it (FNC1 after the variable-length lot as GS)."""
    return f"01{GTIN}10{lot}{GS}17{expiry:%y%m%d}37{count}"


def gs1_scan(lot: str, expiry: date, count: int, device: str = "pick-1") -> Scan:
    data = carton(lot, expiry, count)
    return Scan(
        device_id=device,
        raw=data.encode(),
        data=data,
        symbology="]C1",
        gs1=parse_gs1(data),
        received_at=datetime.now(UTC),
    )


def plain(data: str, device: str = "pick-1") -> Scan:
    return Scan(device, data.encode(), data, None, None, datetime.now(UTC))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "edge.db", site_id="S01")
    Catalog(opened).apply(pick_list_page())
    yield opened
    opened.close()


def station_on(ledger: Ledger, **kwargs: object) -> PickingStation:
    return PickingStation(ledger, Catalog(ledger), GS1_ID, **kwargs)  # type: ignore[arg-type]


def mod10(digits: str) -> int:
    """The GS1 check digit, written from the spec: weights 3, 1, 3... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return (10 - total % 10) % 10


# --- SSCC -----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    extension=st.integers(0, 9),
    prefix=st.integers(6, 12).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)),
    serial=st.integers(0, 10**4 - 1),  # a 12-digit prefix leaves 4 digits: 0..9999
    slip=st.integers(0, 16),
)
def test_an_sscc_has_18_digits_a_right_check_digit_and_a_slip_is_caught(
    extension: int, prefix: str, serial: int, slip: int
) -> None:
    config = SsccConfig(extension, prefix)
    code = config.code(serial)
    assert len(code) == 18
    assert code.isdigit()
    assert code[0] == str(extension)
    assert code[1 : 1 + len(prefix)] == prefix
    assert int(code[1 + len(prefix) : 17]) == serial
    assert int(code[17]) == mod10(code[:17])
    assert parse_gs1("00" + code).sscc == code  # what a scanner at the customer's dock reads
    wrong = code[:slip] + str((int(code[slip]) + 1) % 10) + code[slip + 1 :]
    assert int(wrong[17]) != mod10(wrong[:17])  # any single wrong digit is detected


class CrashError(Exception):
    """The power failing at one step of a pack's transaction."""


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from([None, "allocated", "booked", "recorded"]), max_size=8))
def test_serials_stay_gapless_and_unique_when_packs_crash_at_any_step(
    crashes: list[str | None],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        ledger = Ledger(Path(folder) / "edge.db", site_id="S01")
        try:
            Catalog(ledger).apply(pick_list_page(qty="100", each="50"))
            committed = 0
            for crash_at in crashes:
                station = station_on(ledger)
                station.on_scan(plain("SO000001"))
                station.on_scan(plain("A-01"))
                station.on_scan(gs1_scan("L1", day(30), 1))

                def fault(step: str, crash_at: str | None = crash_at) -> None:
                    if step == crash_at:
                        raise CrashError(step)

                station.fault = fault
                if crash_at is None:
                    station.on_scan(plain("PACK"))
                    committed += 1
                    continue
                with pytest.raises(CrashError):
                    station.on_scan(plain("PACK"))
                # The crashed pack left its pick waiting: pack it after the "restart".
                after = station_on(ledger)
                after.on_scan(plain("SO000001"))
                after.on_scan(plain("PACK"))
                committed += 1
            made = units.packs(ledger)
            assert [unit.serial for unit in made] == list(range(1, committed + 1))
            assert units.last_serial(ledger) == committed
            assert len({unit.sscc for unit in made}) == committed
            issues = [e for e in ledger.events() if e.kind == "issue"]
            assert sorted(str(e.ref) for e in issues) == sorted(f"sscc {u.sscc}" for u in made)
            assert sum(-e.qty for e in issues) == committed  # every pick booked once
        finally:
            ledger.close()


PACKER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from pathlib import Path
    from device_drivers.scanners import Scan
    from edge_agent.catalog import Catalog
    from edge_agent.ledger import Ledger
    from tests.edge_agent.test_picking import GS1_ID, day, gs1_scan, plain, pick_list_page
    from edge_agent.stations.picking import PickingStation

    ledger = Ledger(Path(sys.argv[1]), site_id="S01")
    Catalog(ledger).apply(pick_list_page(qty="200000", each="100000"))
    station = PickingStation(ledger, Catalog(ledger), GS1_ID)
    station.on_scan(plain("SO000001"))
    station.on_scan(plain("A-01"))
    while True:
        station.on_scan(gs1_scan("L1", day(30), 1))
        (unit,) = station.on_scan(plain("PACK"))
        print(unit.serial, flush=True)
    """
)


def test_a_kill_9_mid_packing_leaves_no_gap_and_no_reuse(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    packer = subprocess.Popen(
        [sys.executable, "-c", PACKER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        assert packer.stdout is not None
        seen = [int(packer.stdout.readline()) for _ in range(25)]  # mid-stream, then kill
        packer.send_signal(signal.SIGKILL)
        packer.wait(timeout=patience_timeout(10))
    finally:
        if packer.poll() is None:
            packer.kill()
    assert seen == list(range(1, 26))
    ledger = Ledger(path, site_id="S01")
    try:
        made = units.packs(ledger)
        last = units.last_serial(ledger)
        assert last >= 25
        assert [unit.serial for unit in made] == list(range(1, last + 1))
        # The next pack after the restart takes the next number, never one handed out.
        station = station_on(ledger)
        station.on_scan(plain("SO000001"))
        station.on_scan(plain("A-01"))
        station.on_scan(gs1_scan("L1", day(30), 1))
        (unit,) = station.on_scan(plain("PACK"))
        assert unit.serial == last + 1
        assert unit.sscc not in {made_unit.sscc for made_unit in made}
    finally:
        ledger.close()


# --- the station with a scanner on a pty and a ZPL printer ------------------------------------


@pytest.fixture
def scanner(tmp_path: Path) -> Iterator[tuple[ScannerTwin, SerialLineScanner]]:
    twin = ScannerTwin(tmp_path / "scanner-1")
    driver = SerialLineScanner(SerialScannerConfig(device_id="pick-1", port=tmp_path / "scanner-1"))
    assert driver.read_scan(timeout=0.2) is None  # opens the port: input before it is stale
    yield twin, driver
    driver.close()
    twin.close()


def test_pick_fefo_refuse_swap_short_and_pack_with_sscc_labels(
    ledger: Ledger, scanner: tuple[ScannerTwin, SerialLineScanner], tmp_path: Path
) -> None:
    twin, driver = scanner
    station = station_on(ledger, label_printer="zpl-1")

    def scan(data: str, symbology: str | None = None) -> object:
        twin.send(data, symbology)
        read = driver.read_scan(timeout=patience_timeout(5))
        assert read is not None
        try:
            return station.on_scan(read, today=TODAY)
        except PickRefusedError:
            return None

    scan("SO000001")
    assert station.display.startswith("SO000001 for CUS-1: 1 line(s)")
    assert scan("PACK") is None
    assert "nothing picked" in station.display
    scan("Q")
    assert station.display == (
        "REFUSED location Q is a quarantine location: nothing is picked from it"
    )
    scan("A-01")
    scan(carton("L1", day(30), 10), "]C1")  # the reserved lot, in full
    assert station.display == "OK 10 EA PILL lot L1 (line 1: 10/20)"
    scan(carton("L9", day(90), 5), "]C1")  # expires after every reserved lot
    assert station.display == (
        f"REFUSED lot L9 expires {day(90)}, after reserved lot L2 ({day(60)}):"
        " first expiry first; take lot L2"
    )
    scan(carton("L0", day(-1), 5), "]C1")
    assert station.display.startswith(f"REFUSED lot L0: EXPIRED (expires {day(-1)}")
    scan(carton("L5", day(45), 6), "]C1")  # earlier than L2: swapped in
    assert station.display == "SWAP 6 EA PILL lot L5 for reserved lot L2 (line 1: 16/20)"
    scan(carton("L5", day(45), 9), "]C1")
    assert "more than line 1 still needs (4 EA)" in station.display
    assert scan(GTIN) is None  # an item barcode names no lot
    assert "scan the carton's GS1 label" in station.display

    made = scan("PACK")
    assert isinstance(made, list)
    assert len(made) == 2
    l1, l5 = made
    assert (l1.lot, l1.count, l1.qty, l5.lot, l5.qty) == ("L1", 10, Decimal(10), "L5", Decimal(6))
    assert [unit.serial for unit in made] == [1, 2]
    events = [e for e in ledger.events() if e.kind == "issue"]
    assert [(e.lot, e.qty, e.location, e.doc_id, e.doc_line, e.ref) for e in events] == [
        ("L1", Decimal(-10), "A-01", "SO000001", 1, f"sscc {l1.sscc}"),
        ("L5", Decimal(-6), "A-01", "SO000001", 1, f"sscc {l5.sscc} swap L2"),
    ]
    scan("DONE")
    assert station.display == "DONE SO000001 SHORT: line 1 PILL 16/20 EA"
    assert station.report()["shorts"] == [
        {
            "so_id": "SO000001",
            "so_line": 1,
            "item": "PILL",
            "wanted": "20",
            "picked": "16",
            "uom": "EA",
        }
    ]

    with ZplPrinterTwin() as printer_twin:
        printer = ZplPrinter(
            ZplPrinterConfig(
                device_id="zpl-1",
                host="127.0.0.1",
                port=printer_twin.port,
                reply_timeout=0.3,
                job_timeout=3.0,
                poll_interval=0.03,
                settle_time=0.1,
                journal_path=tmp_path / "zpl-1.journal",
            )
        )
        try:
            spooler = LabelSpooler(ledger, printer, "zpl-1")
            assert spooler.run_once(threading.Event())
            assert spooler.run_once(threading.Event())  # nothing owed twice
        finally:
            printer.close()
        labels = printer_twin.labels()
    assert [label.job_id for label in labels] == [f"sscc-{l1.sscc}", f"sscc-{l5.sscc}"]
    for label, unit in zip(labels, made, strict=True):
        assert not label.problems
        read = [parse_gs1(str(symbol.content)) for symbol in label.symbols]
        content, sscc_symbol = read
        assert sscc_symbol.sscc == unit.sscc
        assert content.elements == {
            "02": GTIN,
            "37": str(unit.count),
            "10": unit.lot,
            "15": f"{unit.expiry:%y%m%d}",
        }
    assert [unit.label_state for unit in units.packs(ledger)] == ["printed", "printed"]


def test_a_later_lot_is_a_warning_where_the_site_says_so(ledger: Ledger) -> None:
    station = station_on(ledger, later_expiry="warn")
    station.on_scan(plain("SO000001"))
    station.on_scan(plain("B-07"))  # not in the cached tree: stock is where the edge says
    assert station.display == "at B-07 (not in the site's location tree): scan a carton"
    with pytest.raises(PickRefusedError, match="no active item"):
        station.on_scan(plain("5901234123457"))  # a GTIN-shaped code is never a location
    station.on_scan(plain("A-01"))
    station.on_scan(gs1_scan("L9", day(90), 5), today=TODAY)
    assert station.display.startswith("WARNING lot L9 expires")
    assert station.display.endswith("for reserved lot L2 (line 1: 5/20)")
    with pytest.raises(PickRefusedError, match="EXPIRED"):  # never an expired lot
        station.on_scan(gs1_scan("L0", day(0), 1), today=TODAY)


def test_migration_10_adds_picking_and_pulls_the_feed_again(tmp_path: Path) -> None:
    import sqlite3  # noqa: PLC0415

    from edge_agent.migrations import migrate  # noqa: PLC0415

    conn = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
    try:
        assert migrate(conn, target=9) == 9
        conn.execute("INSERT INTO sync_cursor VALUES ('master-data', 42, '2026-12-04')")
        assert migrate(conn, target=10) == 10
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"cache_pick_lists", "picks", "packs", "sscc_counter"} <= tables
        assert conn.execute("SELECT last_serial FROM sscc_counter").fetchall() == [(0,)]
        assert conn.execute("SELECT COUNT(*) FROM sync_cursor").fetchone() == (0,)
    finally:
        conn.close()


def test_the_site_file_names_picking_scanners_it_has_and_a_company_prefix() -> None:
    from pydantic import ValidationError  # noqa: PLC0415

    from edge_agent.config import SiteConfig  # noqa: PLC0415

    devices = {"scanners": [{"id": "pick-1", "driver": "serial"}]}
    good = SiteConfig.model_validate(
        {
            "site": {"id": "S01"},
            "picking": {"scanners": ["pick-1"], "company_prefix": "0614141"},
            "devices": devices,
        }
    )
    assert (good.picking.extension_digit, good.picking.later_expiry) == (0, "refuse")
    with pytest.raises(ValidationError, match="company_prefix"):
        SiteConfig.model_validate(
            {"site": {"id": "S01"}, "picking": {"scanners": ["pick-1"]}, "devices": devices}
        )
    with pytest.raises(ValidationError, match=r"picking\.scanner is 'pick-2'"):
        SiteConfig.model_validate(
            {
                "site": {"id": "S01"},
                "picking": {"scanners": ["pick-2"], "company_prefix": "0614141"},
                "devices": devices,
            }
        )


def test_the_agent_sends_the_picking_scanners_scans_to_picking(tmp_path: Path) -> None:
    """A whole agent in this process: the picking scanner's scans pick and pack (the
    unit's label owed on the picking printer), the dock scanner's still receive."""
    from edge_agent.agent import EdgeAgent  # noqa: PLC0415
    from edge_agent.config import load_site_config  # noqa: PLC0415
    from tests.patience import wait_for  # noqa: PLC0415

    with (
        ScannerTwin(link=tmp_path / "scanner-1") as dock,
        ScannerTwin(link=tmp_path / "pick-1") as picker,
        ZplPrinterTwin() as printer,
    ):
        site_file = offline_site_file(
            tmp_path,
            """
[picking]
scanners = ["pick-1"]
printer = "zpl-1"
extension_digit = 3
company_prefix = "0614141"
""",
            {"scanner-1": dock.link, "pick-1": picker.link},
            f"""
[[devices.printers]]
id = "zpl-1"
driver = "zpl"
host = "127.0.0.1"
port = {printer.port}
reply_timeout = 0.3
job_timeout = {patience_timeout(2.0)}
poll_interval = 0.03
settle_time = 0.1
""",
        )
        agent = EdgeAgent(load_site_config(site_file))
        agent.catalog.apply(pick_list_page())
        agent.start()
        try:
            wait_connected(agent)
            station = agent.pickers["pick-1"]
            shown_in_turn(
                picker,
                station,
                (
                    (data, "]C1" if data.startswith("01") else None, shown)
                    for data, shown in (
                        ("SO000001", "SO000001 for CUS-1"),
                        ("A-01", "at A-01"),
                        (carton("L1", day(30), 10), "OK 10 EA PILL lot L1"),
                        ("PACK", "PACKED 1 unit(s)"),
                    )
                ),
            )
            dock.send(GTIN)
            assert wait_for(lambda: len(printer.labels()) == 1, 10)
            assert wait_for(lambda: any(e.kind == "receipt" for e in agent.ledger.events()), 10)
            (unit,) = units.packs(agent.ledger)
            assert printer.labels()[0].job_id == f"sscc-{unit.sscc}"
            assert agent.status()["picking"]["pick-1"]["last_sscc_serial"] == 1
            issued = [e for e in agent.ledger.events() if e.kind == "issue"]
            assert [(e.device_id, e.ref) for e in issued] == [("pick-1", f"sscc {unit.sscc}")]
        finally:
            agent.stop()


def test_more_of_a_reserved_lot_than_it_holds_is_swapped_for_a_later_one(ledger: Ledger) -> None:
    station = station_on(ledger)
    for data in ("SO000001", "A-01"):
        station.on_scan(plain(data))
    rows = station.on_scan(gs1_scan("L1", day(30), 15), today=TODAY)
    assert isinstance(rows, list)
    assert [(row.qty, row.swapped_from, row.count) for row in rows] == [
        (Decimal(10), None, 15),
        (Decimal(5), "L2", 0),
    ]
    assert station.display == "SWAP 15 EA PILL lot L1 for reserved lot L2 (line 1: 15/20)"
    (unit,) = station.on_scan(plain("PACK"))  # type: ignore[misc]
    assert (unit.count, unit.qty) == (15, Decimal(15))
    issued = [(e.qty, e.ref) for e in ledger.events() if e.kind == "issue"]
    assert issued == [
        (Decimal(-10), f"sscc {unit.sscc}"),
        (Decimal(-5), f"sscc {unit.sscc} swap L2"),
    ]


def test_two_pickers_packing_at_once_share_one_gapless_counter(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "edge.db", site_id="S01")
    try:
        Catalog(ledger).apply(pick_list_page(qty="100", each="50"))
        errors: list[BaseException] = []

        def picker(lot: str, expiry: date) -> None:
            station, device = station_on(ledger), f"pick-{lot}"
            try:
                station.on_scan(plain("SO000001", device))
                station.on_scan(plain("A-01", device))
                for _ in range(10):
                    station.on_scan(gs1_scan(lot, expiry, 1, device), today=TODAY)
                    station.on_scan(plain("PACK", device))
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=picker, args=("L1", day(30))),
            threading.Thread(target=picker, args=("L2", day(60))),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=patience_timeout(30))
        assert errors == []
        made = units.packs(ledger)
        assert [unit.serial for unit in made] == list(range(1, 21))
        assert sorted(unit.lot for unit in made) == ["L1"] * 10 + ["L2"] * 10
    finally:
        ledger.close()
