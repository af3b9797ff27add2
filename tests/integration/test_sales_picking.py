"""A sales order from confirm to part-payment, picked and packed at a real site.

Central and the edge agent run as the CLI starts them (forked from the zygote, so the
three edge starts cost no imports); the scanner twin is ``jxc sim scanner`` on a
pseudo-terminal and the ZPL printer a twin in this process. The site receives five lots
of three items; central confirms an order for the three items and reserves the first
one FEFO across its two earliest lots; an earlier lot arrives after the confirm. The
site's edge is then set up as a picking station (its site file's ``[picking]``): the
pick list comes through the feed; the picker takes the reserved earliest lot and packs
it, a later-expiring lot is refused on the display line, the earlier lot is swapped in
for the second reserved one, and the agent is killed (``kill -9``) before packing. After
the restart the surviving pick is packed with the other two items: four SSCC-18 units
with valid check digits and consecutive serials, none reused across the kill, each
labelled. Central books one shipment per SSCC; the shipments are invoiced and one
invoice part-paid through the API; receivables ageing is checked on given dates.
"""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jxc import paths
from simulators.printer import ZplPrinterTwin
from tests.central.conftest import (  # noqa: F401 (postgres_session is a fixture)
    fresh_postgres_database,
    postgres_session,
)
from tests.integration.processes import Site, Zygote, admin_headers, eventually, rows
from tests.patience import patience_timeout

pytestmark = pytest.mark.integration

PILL, AMOX, PARA = "09506000134352", "09506000134376", "05901234123457"
ITEMS = {"PILL": PILL, "AMOX": AMOX, "PARA": PARA}
PREFIX = "0614141"
PICKING = (
    f'[picking]\nscanners = ["scanner-1"]\nprinter = "printer-1"\ncompany_prefix = "{PREFIX}"\n'
)


def call(method: str, url: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"content-type": "application/json", **admin_headers(url), **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=patience_timeout(5)) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:600]!r}") from exc
    return json.loads(text) if text else None


def carton(gtin: str, lot: str, expiry: date, count: int) -> str:
    """A GS1-128 carton read: GTIN, expiry, lot (variable, so FNC1 after it), count."""
    return f"]C101{gtin}17{expiry:%y%m%d}10{lot}<GS>37{count}"


def gs1_check_digit(body: str) -> str:
    """GS1 mod 10: weights 3 and 1 from the right (computed here, not by the code under test)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, zygote: Zygote
) -> Iterator[tuple[Site, ZplPrinterTwin]]:
    with ExitStack() as stack:
        database_url = None
        if request.param == "postgresql":
            request.getfixturevalue("postgres_session")  # skips loudly, or fails in CI
            url = stack.enter_context(fresh_postgres_database("jxc_it"))
            database_url = url.render_as_string(hide_password=False)
        printer = stack.enter_context(ZplPrinterTwin())
        running = Site(
            tmp_path,
            database_url=database_url,
            zygote=zygote,
            devices_extra=f"""
[[devices.printers]]
id = "printer-1"
driver = "zpl"
host = "127.0.0.1"
port = {printer.port}
job_timeout = {patience_timeout(2.0)}
poll_interval = 0.03
settle_time = 0.1
""",
        )
        stack.callback(running.stop_all)
        running.start_central()
        running.register_site()
        running.start_scanner()
        yield running, printer


def test_an_order_picked_fefo_packed_shipped_invoiced_and_part_paid(
    site: tuple[Site, ZplPrinterTwin],
) -> None:
    running, printer = site
    api = running.central_url
    today = datetime.now(UTC).date()

    def day(offset: int) -> date:
        return today + timedelta(days=offset)

    # --- central's master data, then the site receives its lots ---------------------------
    call("PUT", f"{api}{paths.SITES}/{running.site_id}", {"kind": "warehouse", "name": "仓"})
    call(
        "PUT",
        f"{api}{paths.SITES}/{running.site_id}/locations/DOCK-1",
        {"level": "zone", "kind": "storage"},
    )
    call("PUT", f"{api}{paths.PAYMENT_TERMS}/N30", {"name": "30 天", "days": 30})
    call(
        "POST",
        f"{api}{paths.PARTNERS}",
        {"code": "CUS-1", "name": "客户", "is_customer": True, "payment_terms": "N30"},
    )
    for code, gtin in ITEMS.items():
        item = {
            "name": code,
            "uom": "EA",
            "lot_tracked": True,
            "expiry_tracked": True,
            "barcodes": [{"barcode": gtin}],
        }
        call("PUT", f"{api}{paths.ITEMS}/{code}", item)
    running.start_edge()
    eventually(
        lambda: running.edge_status()["master_data"]["cached"]["items"] == 3,
        what="the items at the edge",
    )
    received = [
        (PILL, "L1", day(30), 10),
        (PILL, "L2", day(60), 10),
        (PILL, "L9", day(90), 10),
        (AMOX, "A1", day(200), 5),
        (PARA, "P1", day(200), 5),
    ]
    for n, (gtin, lot, expiry, count) in enumerate(received, start=1):
        running.scan(carton(gtin, lot, expiry, count))
        eventually(lambda n=n: running.edge_status()["ledger"]["last_seq"] == n, what=f"carton {n}")
    eventually(
        lambda: running.edge_status()["ledger"]["pending"] == 0, within=60, what="receipts synced"
    )

    # --- the order: three items, the first reserved FEFO across two lots -----------------
    so = call(
        "POST",
        f"{api}{paths.SALES_ORDERS}",
        {
            "customer": "CUS-1",
            "site_id": running.site_id,
            "lines": [
                {"item_code": "PILL", "qty": "20", "unit_price": "3"},
                {"item_code": "AMOX", "qty": "5", "unit_price": "2"},
                {"item_code": "PARA", "qty": "5", "unit_price": "1"},
            ],
        },
        **{"Idempotency-Key": "so-1"},
    )
    so_id = so["so_id"]
    confirmed = call("POST", f"{api}{paths.SALES_ORDERS}/{so_id}/confirm")
    assert [
        [(r["lot"], r["qty"]) for r in line["reservations"]] for line in confirmed["lines"]
    ] == [[("L1", "10"), ("L2", "10")], [("A1", "5")], [("P1", "5")]]
    running.scan(carton(PILL, "L5", day(45), 10))  # earlier than L2, after the confirm
    eventually(lambda: running.edge_status()["ledger"]["last_seq"] == 6, what="lot L5")
    eventually(
        lambda: (
            running.edge_status()["master_data"]["cached"]["pick_lists"] == 1
            and running.edge_status()["ledger"]["pending"] == 0
        ),
        within=60,
        what="the pick list at the edge and L5 at central",
    )

    # --- the scanner now drives the site's picking station -------------------------------
    edge = running.procs.pop("edge")
    edge.send_signal(signal.SIGTERM)
    edge.wait(timeout=patience_timeout(10))
    running.devices_extra += PICKING
    running.start_edge()

    def picker() -> dict[str, Any]:
        report: dict[str, Any] = running.edge_status()["picking"]["scanner-1"]
        return report

    def picks() -> int:
        return int(rows(running.edge_db, "SELECT COUNT(*) FROM picks")[0][0])

    def start_list() -> None:
        running.scan(so_id)
        eventually(lambda: picker()["pick_list"] == so_id, what="the pick list selected")
        running.scan("DOCK-1")
        eventually(lambda: picker()["location"] == "DOCK-1", what="the location selected")

    start_list()
    running.scan(carton(PILL, "L1", day(30), 10))
    eventually(lambda: picks() == 1, what="L1 picked")
    assert picker()["display"].startswith("OK 10 EA PILL lot L1")
    running.scan("PACK")
    eventually(lambda: picker()["last_sscc_serial"] == 1, what="the first unit packed")
    running.scan(carton(PILL, "L9", day(90), 10))  # later than both reserved lots
    eventually(lambda: picker()["refused"] == 1, what="L9 refused")
    assert "first expiry first" in picker()["display"]
    running.scan(carton(PILL, "L5", day(45), 10))
    eventually(lambda: picks() == 2, what="L5 picked")
    assert (picker()["swaps"], picker()["display"][:4]) == (1, "SWAP")

    running.kill_edge()  # picked, not packed: a power cut at the packing bench
    running.start_edge()
    assert picker()["last_sscc_serial"] == 1
    start_list()
    running.scan(carton(AMOX, "A1", day(200), 5))
    running.scan(carton(PARA, "P1", day(200), 5))
    eventually(lambda: picks() == 4, what="the other two items picked")
    running.scan("PACK")
    eventually(lambda: picker()["last_sscc_serial"] == 4, what="three more units packed")
    running.scan("DONE")
    eventually(lambda: "every line picked" in picker()["display"], what="the list done")
    eventually(
        lambda: running.edge_status()["ledger"]["pending"] == 0, within=60, what="issues synced"
    )

    # --- central: one shipment per SSCC, valid and never reused ---------------------------
    shipments = call("GET", f"{api}{paths.SHIPMENTS}?so_id={so_id}")["shipments"]
    by_sscc = {
        s["sscc"]: [(x["so_line"], x["lot"], x["qty"], x["location"]) for x in s["lines"]]
        for s in shipments
    }
    assert len(shipments) == len(by_sscc) == 4
    for sscc in by_sscc:
        assert len(sscc) == 18
        assert sscc[:8] == f"0{PREFIX}"
        assert sscc[17] == gs1_check_digit(sscc[:17]), sscc
    serials = {int(sscc[8:17]): lines for sscc, lines in by_sscc.items()}
    assert serials == {
        1: [(1, "L1", "10", "DOCK-1")],  # packed before the kill
        2: [(1, "L5", "10", "DOCK-1")],
        3: [(2, "A1", "5", "DOCK-1")],
        4: [(3, "P1", "5", "DOCK-1")],
    }
    eventually(lambda: len(printer.labels()) == 4, what="one label per unit")
    labels = printer.labels()
    assert all(label.problems == () for label in labels)
    assert sorted(s for s in by_sscc if any(s.encode() in lb.raw for lb in labels)) == sorted(
        by_sscc
    )

    order = call("GET", f"{api}{paths.SALES_ORDERS}/{so_id}")
    assert [line["shipped_qty"] for line in order["lines"]] == ["20", "5", "5"]
    assert order["status"] == "closed"  # every line shipped in full
    stock = call("GET", f"{api}{paths.STOCK_AVAILABLE}?site_id={running.site_id}&item=PILL")
    assert {lot["lot"]: lot["on_hand"] for lot in stock["lots"]} == {
        "L1": "0",
        "L2": "10",
        "L5": "0",
        "L9": "10",
    }

    # --- invoiced, part-paid, aged on given dates -----------------------------------------
    invoices = {}
    for serial, on in ((1, "2026-01-10"), (2, "2026-03-01"), (3, "2026-03-01"), (4, "2026-03-01")):
        shipment_id = next(s["shipment_id"] for s in shipments if int(s["sscc"][8:17]) == serial)
        invoices[serial] = call(
            "POST",
            f"{api}{paths.SALES_INVOICES}",
            {"shipment_id": shipment_id, "invoice_date": on},
            **{"Idempotency-Key": f"inv-{serial}"},
        )
    assert {k: (v["gross_amount"], v["due_date"]) for k, v in invoices.items()} == {
        1: ("30", "2026-02-09"),  # 10 x 3, N30
        2: ("30", "2026-03-31"),
        3: ("10", "2026-03-31"),
        4: ("5", "2026-03-31"),
    }
    first = invoices[1]
    paid = call(
        "POST",
        f"{api}{paths.SALES_INVOICES}/{first['invoice_id']}/payments",
        {"amount": "10", "received_on": "2026-02-01", "method": "bank"},
        **{"If-Match": f'"{first["version"]}"', "Idempotency-Key": "pay-1"},
    )
    assert (paid["paid_amount"], paid["outstanding"], paid["status"]) == ("10", "20", "open")

    def ageing(on: str) -> tuple[str, ...]:
        answer = call("GET", f"{api}{paths.RECEIVABLES_AGEING}?on={on}")
        [customer] = answer["customers"]
        assert customer["customer"] == "CUS-1"
        buckets = customer["buckets"]
        names = ("current", "1-30", "31-60", "61-90", "over_90")
        return (*(buckets[name] for name in names), customer["total"])

    # current, 1-30, 31-60, 61-90, over 90, total; the payment counts from the day it came.
    assert ageing("2026-01-31") == ("30", "0", "0", "0", "0", "30")
    assert ageing("2026-02-15") == ("0", "20", "0", "0", "0", "20")
    assert ageing("2026-04-15") == ("0", "45", "0", "20", "0", "65")
    assert ageing("2026-06-01") == ("0", "0", "0", "45", "20", "65")
