"""Receiving cartons against a PO pulled from a real central, at a real dock.

Central, the edge agent and the scanner run as the CLI starts them; scale and printer are
twins in this process (see ``tests/dock.py``). A pharmacy PO of two lines is approved at
central, reaches the edge through the change feed, and is received carton by carton:
a carton that settles after wobbling is booked against its line, the same SSCC scanned
again is booked once, a short carton and an expired lot go to quarantine, and central's
PO progress and stock by location end exactly as expected.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from jxc import paths
from tests.central.conftest import (  # noqa: F401 (postgres_session is a fixture)
    fresh_postgres_database,
    postgres_session,
)
from tests.dock import DockTwins
from tests.integration.processes import Site, Zygote, admin_headers, eventually, get_json, rows
from tests.patience import patience_timeout

pytestmark = pytest.mark.integration

AMOX_GTIN = "09506000134376"
PARA_GTIN = "05901234123457"
PHARMA = {
    "uom": "BOX",
    "expiry_tracked": True,
    "lot_tracked": True,
    "shelf_life_days": 730,
    "min_remaining_days": 180,
    "unit_weight": "0.25",
    "weight_tolerance": "3",
}
ITEMS = {
    "AMOX-500": {"name": "Amoxicillin 500 mg", "barcodes": [{"barcode": AMOX_GTIN}], **PHARMA},
    "PARA-500": {"name": "Paracetamol 500 mg", "barcodes": [{"barcode": PARA_GTIN}], **PHARMA},
}


def call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"content-type": "application/json", **admin_headers(url)},
    )
    try:
        with urllib.request.urlopen(request, timeout=patience_timeout(5)) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:600]!r}") from exc
    return json.loads(text) if text else None


ON_BOTH = pytest.mark.parametrize(
    "dock", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
"""Central on each database kind; the other tests here run on SQLite only (same code above
the database, and each real-process test costs tens of seconds)."""


@pytest.fixture
def dock(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    zygote: Zygote,
) -> Iterator[tuple[Site, DockTwins]]:
    with ExitStack() as stack:
        database_url = None
        if getattr(request, "param", "sqlite") == "postgresql":
            request.getfixturevalue("postgres_session")  # skips loudly, or fails in CI
            url = stack.enter_context(fresh_postgres_database("jxc_it"))
            database_url = url.render_as_string(hide_password=False)
        yield from _dock(tmp_path, monkeypatch, database_url, zygote)


def _dock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None, zygote: Zygote
) -> Iterator[tuple[Site, DockTwins]]:
    # One admin creates and approves the PO here; segregation of duties has its own tests.
    monkeypatch.setenv("JXC_CENTRAL_PURCHASE_ORDER_SOD", "false")
    twins = DockTwins.start(tmp_path, scanner=False)
    site = Site(
        tmp_path,
        database_url=database_url,
        receiving_extra=(
            'scale = "scale-1"\nprinter = "printer-1"\nweigh_timeout_s = 5\n'
            'purchase_orders = true\nquarantine = "QUAR"'
        ),
        devices_extra=twins.devices_toml(reply_timeout=0.5),
        zygote=zygote,
    )
    try:
        site.start_central()
        site.register_site()
        call(
            "PUT",
            f"{site.central_url}{paths.SITES}/{site.site_id}",
            {"kind": "store", "name": "药店"},
        )
        call(
            "POST",
            f"{site.central_url}{paths.PARTNERS}",
            {"code": "PHARMA-SUP", "name": "p", "is_supplier": True},
        )
        for code, body in ITEMS.items():
            call("PUT", f"{site.central_url}{paths.ITEMS}/{code}", body)
        site.start_scanner()
        site.start_edge()
        yield site, twins
    finally:
        site.stop_all()
        twins.close()


def sscc(serial: int) -> str:
    """An SSCC with its GS1 check digit (mod 10, weights 3 and 1 from the right)."""
    body = f"09506000{serial:09d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def carton(gtin: str, sscc: str, lot: str, expiry: datetime, count: int) -> str:
    """A GS1-128 read: SSCC, GTIN, expiry, lot (variable, so FNC1 after it), count."""
    return f"]C100{sscc}01{gtin}17{expiry:%y%m%d}10{lot}<GS>37{count}"


@ON_BOTH
def test_a_pharmacy_po_received_carton_by_carton(dock: tuple[Site, DockTwins]) -> None:
    """Also ``kill -9`` of the edge agent between two cartons: after its restart the first
    carton scanned again is still a duplicate, and nothing is lost or booked twice."""
    site, twins = dock
    po = call(
        "POST",
        f"{site.central_url}{paths.PURCHASE_ORDERS}",
        {
            "supplier": "PHARMA-SUP",
            "site_id": site.site_id,
            "lines": [
                {"item_code": "AMOX-500", "qty": "40", "unit_price": "3"},
                {"item_code": "PARA-500", "qty": "20", "unit_price": "1"},
            ],
        },
    )
    po_id = po["po_id"]
    call("POST", f"{site.central_url}{paths.PURCHASE_ORDERS}/{po_id}/approve")
    eventually(
        lambda: site.edge_status()["master_data"]["cached"]["po_lines"] == 2,
        what="the PO's two lines at the edge",
    )
    later = datetime.now(UTC) + timedelta(days=400)
    expired = datetime.now(UTC) - timedelta(days=10)

    twins.scale.set_weight(Decimal("5.0"), "kg", settle=0.5)  # wobbles, then settles
    site.scan(carton(AMOX_GTIN, sscc(1), "A1", later, 20))
    eventually(lambda: site.edge_status()["ledger"]["last_seq"] == 1, within=30, what="carton 1")
    site.scan(carton(AMOX_GTIN, sscc(1), "A1", later, 20))  # the same carton
    eventually(
        lambda: site.edge_status()["receiving"]["duplicates"] == 1, what="the duplicate seen"
    )
    twins.scale.set_weight(Decimal("4.0"), "kg")  # 16 boxes' weight for 20: short
    site.scan(carton(AMOX_GTIN, sscc(2), "A2", later, 20))
    eventually(lambda: site.edge_status()["ledger"]["last_seq"] == 2, within=30, what="carton 2")
    site.kill_edge()  # a power cut at the dock, receipts perhaps not yet pushed
    site.start_edge()
    site.scan(carton(AMOX_GTIN, sscc(1), "A1", later, 20))  # the first carton, once more
    eventually(
        lambda: site.edge_status()["receiving"]["duplicates"] == 1,
        what="the duplicate seen after the restart",
    )
    twins.scale.set_weight(Decimal("5.0"), "kg")
    site.scan(carton(PARA_GTIN, sscc(3), "P0", expired, 20))
    eventually(lambda: site.edge_status()["ledger"]["last_seq"] == 3, within=30, what="3 cartons")
    eventually(
        lambda: site.edge_status()["ledger"]["pending"] == 0, within=60, what="synced to central"
    )
    receiving = site.edge_status()["receiving"]
    reasons = sorted(note["code"] for note in receiving["quarantined"])
    assert reasons == ["expired", "short_weight"]
    assert receiving["duplicates"] == 1

    events = site.central_rows(
        "SELECT item, location, qty, doc_id, doc_line FROM ledger_events ORDER BY seq"
    )
    assert [(e[0], e[1], Decimal(e[2]) / 1_000_000, e[3], e[4]) for e in events] == [  # micro-units
        ("AMOX-500", "DOCK-1", Decimal(20), po_id, 1),
        ("AMOX-500", "QUAR", Decimal(20), po_id, 1),
        ("PARA-500", "QUAR", Decimal(20), po_id, 2),
    ]
    lines = get_json(f"{site.central_url}{paths.PURCHASE_ORDERS}/{po_id}")["lines"]
    assert [Decimal(line["received_qty"]) for line in lines] == [Decimal(40), Decimal(20)]
    balances = get_json(f"{site.central_url}{paths.STOCK}?site_id={site.site_id}")
    assert {(b["location"], b["item"], b["lot"], Decimal(b["qty"])) for b in balances} == {
        ("DOCK-1", "AMOX-500", "A1", Decimal(20)),
        ("QUAR", "AMOX-500", "A2", Decimal(20)),
        ("QUAR", "PARA-500", "P0", Decimal(20)),
    }
    eventually(lambda: len(twins.printer.labels()) == 3, what="one label per carton")


def test_central_away_and_paper_out_mid_po_the_edge_goes_on(
    dock: tuple[Site, DockTwins],
) -> None:
    """Offline the edge keeps receiving against its cached lines and counts its own unsynced
    receipts (no over-receipt while central is away); a label waiting for paper prints once;
    everything reaches central after."""
    site, twins = dock
    po = call(
        "POST",
        f"{site.central_url}{paths.PURCHASE_ORDERS}",
        {
            "supplier": "PHARMA-SUP",
            "site_id": site.site_id,
            "lines": [{"item_code": "AMOX-500", "qty": "40", "unit_price": "3"}],
        },
    )
    po_id = po["po_id"]
    call("POST", f"{site.central_url}{paths.PURCHASE_ORDERS}/{po_id}/approve")
    eventually(
        lambda: site.edge_status()["master_data"]["cached"]["po_lines"] == 1,
        what="the PO's line at the edge",
    )
    later = datetime.now(UTC) + timedelta(days=400)
    site.kill("central")
    twins.printer.set_paper_out(True)
    twins.scale.set_weight(Decimal("5.0"), "kg")
    for n in (1, 2, 3):  # 60 boxes against 40 ordered (+0 %): the third is an over-receipt
        site.scan(carton(AMOX_GTIN, sscc(10 + n), f"B{n}", later, 20))
        eventually(lambda n=n: site.edge_status()["ledger"]["last_seq"] == n, what=f"carton {n}")
    receiving = site.edge_status()["receiving"]
    assert [note["code"] for note in receiving["quarantined"]] == ["over_receipt"]
    assert receiving["open_lines"][0]["received"] == "60"
    assert twins.printer.labels() == []
    twins.printer.set_paper_out(False)
    eventually(lambda: len(twins.printer.labels()) == 3, what="the labels once paper is back")
    site.start_central()
    eventually(
        lambda: site.edge_status()["ledger"]["pending"] == 0, within=60, what="synced to central"
    )
    lines = get_json(f"{site.central_url}{paths.PURCHASE_ORDERS}/{po_id}")["lines"]
    assert Decimal(lines[0]["received_qty"]) == 60
    locations = rows(site.central_db, "SELECT location FROM ledger_events ORDER BY seq")
    assert [loc for (loc,) in locations] == ["DOCK-1", "DOCK-1", "QUAR"]
    found = get_json(f"{site.central_url}{paths.PURCHASE_EXCEPTIONS}?status=open")["exceptions"]
    assert [(e["kind"], e["po_id"], e["line_no"]) for e in found] == [("over_receipt", po_id, 1)]
    assert len(twins.printer.labels()) == 3


def test_two_open_lines_the_operator_picks_with_the_next_scan(
    dock: tuple[Site, DockTwins],
) -> None:
    site, twins = dock
    po_ids = []
    for _ in range(2):
        po = call(
            "POST",
            f"{site.central_url}{paths.PURCHASE_ORDERS}",
            {
                "supplier": "PHARMA-SUP",
                "site_id": site.site_id,
                "lines": [{"item_code": "AMOX-500", "qty": "40", "unit_price": "3"}],
            },
        )
        call("POST", f"{site.central_url}{paths.PURCHASE_ORDERS}/{po['po_id']}/approve")
        po_ids.append(po["po_id"])
    eventually(
        lambda: site.edge_status()["master_data"]["cached"]["po_lines"] == 2, what="two lines"
    )
    twins.scale.set_weight(Decimal("5.0"), "kg")
    site.scan(carton(AMOX_GTIN, sscc(20), "C1", datetime.now(UTC) + timedelta(days=400), 20))
    eventually(
        lambda: site.edge_status()["receiving"]["awaiting_choice"], what="the operator asked"
    )
    assert "pick one" in site.edge_status()["receiving"]["display"]
    assert site.edge_status()["ledger"]["last_seq"] == 0
    site.scan("2")
    eventually(lambda: site.edge_status()["ledger"]["last_seq"] == 1, what="the pick booked")
    eventually(lambda: site.edge_status()["ledger"]["pending"] == 0, within=60, what="synced")
    booked = rows(site.central_db, "SELECT doc_id, doc_line, location FROM ledger_events")
    assert booked == [(po_ids[1], 1, "DOCK-1")]
