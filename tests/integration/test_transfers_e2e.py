"""Transfers (调拨) between two sites with real processes, each end offline part of the time.

One central (SQLite) and two sites, each with its own site file, edge agent and scanner
twin on a pty (``[transfers] scanners``), started through the CLI as a user would (forked
from a zygote, imports done, to keep the test's CPU cost down). Two transfers S01 → S02:

* **TR1, whole.** S01 ships it while central is down; the goods reach in transit when
  central is back. S02's agent is stopped, then receives it offline (central down again)
  and, ``kill -9`` in the middle of receiving, carries on after its restart: the scans
  were kept. Central back: the transfer closes as received, nothing in transit, no
  exception, and each site's stock is right.
* **TR2, short.** Shipped with TR1; S02 receives two fewer than left. The transfer closes
  with a ``short`` exception showing both quantities; the two stay in transit until a
  person at central resolves the exception as lost, which takes in transit to zero.

The in-process test ``tests/edge_agent/test_transfers_central.py`` covers the same on
PostgreSQL as well, and the costs that travel with the goods.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from edge_agent.ledger import EventDraft, Ledger
from jxc import paths
from jxc.contract import EventKind
from tests.central.conftest import user_token
from tests.integration.processes import Site, Zygote, admin_headers, eventually, get_json, stop
from tests.patience import patience_timeout

pytestmark = pytest.mark.integration

GTIN = "09506000134352"
TODAY = datetime.now(UTC).date()
TRANSFER_SCANNER = '[transfers]\nscanners = ["scanner-1"]'


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def carton(lot: str, expiry: date, count: int) -> str:
    """A GS1-128 read of the pill's carton: GTIN, lot (then FNC1), expiry, count."""
    return f"]C101{GTIN}10{lot}<GS>17{expiry:%y%m%d}37{count}"


def call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"content-type": "application/json", **(headers or admin_headers(url))},
    )
    try:
        with urllib.request.urlopen(request, timeout=patience_timeout(5)) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url}: {exc.code} {exc.read()[:600]!r}") from exc
    return json.loads(text) if text else None


@pytest.fixture
def sites(tmp_path: Path, zygote: Zygote) -> Iterator[tuple[Site, Site]]:
    a = Site(tmp_path / "a", site_id="S01", devices_extra=TRANSFER_SCANNER, zygote=zygote)
    a.root.mkdir()
    b = Site(
        tmp_path / "b",
        site_id="S02",
        devices_extra=TRANSFER_SCANNER,
        zygote=zygote,
        central_port=a.central_port,
        database_url=f"sqlite:///{a.central_db}",
    )
    b.root.mkdir()
    try:
        yield a, b
    finally:
        b.stop_all()
        a.stop_all()


def stock(site: Site) -> dict[tuple[str, str | None], Decimal]:
    rows = get_json(f"{site.central_url}{paths.STOCK}?site_id={site.site_id}&item=PILL")
    return {(r["location"], r["lot"]): Decimal(r["qty"]) for r in rows if Decimal(r["qty"])}


def in_transit(site: Site) -> dict[tuple[str, str | None], Decimal]:
    rows = get_json(f"{site.central_url}{paths.STOCK_IN_TRANSIT}?item=PILL")
    return {(r["transfer_id"], r["lot"]): Decimal(r["qty"]) for r in rows if Decimal(r["qty"])}


def status(site: Site, transfer_id: str) -> str:
    found: str = get_json(f"{site.central_url}{paths.TRANSFERS}/{transfer_id}")["status"]
    return found


def display(site: Site) -> str:
    shown: str = site.edge_status()["transfers"]["scanner-1"]["display"]
    return shown


def scan(site: Site, *reads: tuple[str, str]) -> None:
    """Each read on the site's scanner twin, waiting for the station to answer it."""
    for read, shown in reads:
        site.scan(read)
        eventually(lambda shown=shown: display(site).startswith(shown), what=f"display {shown!r}")


def open_at(site: Site) -> list[str]:
    return [t["transfer_id"] for t in site.edge_status()["transfers"]["scanner-1"]["open"]]


def pushed(site: Site) -> bool:
    """Everything in the site's ledger is at central."""
    return site.edge_status()["ledger"]["pending"] == 0


def test_two_transfers_between_two_sites_each_offline_part_of_the_time(
    sites: tuple[Site, Site],
) -> None:
    a, b = sites
    a.start_central()
    a.register_site()
    b.register_site()
    central = a.central_url
    for site in (a, b):
        call("PUT", f"{central}{paths.SITES}/{site.site_id}", {"kind": "store", "name": "药店"})
    item = {
        "name": "药片",
        "uom": "EA",
        "lot_tracked": True,
        "expiry_tracked": True,
        "barcodes": [{"barcode": GTIN}],
    }
    call("PUT", f"{central}{paths.ITEMS}/PILL", item)
    # Two people: who approves a transfer may not be who made it.
    engine = create_engine(a.central_database_url, poolclass=NullPool)
    try:
        maker, boss = (
            {"Authorization": f"Bearer {user_token(engine, name, ['store_manager'])}"}
            for name in ("maker", "boss")
        )
    finally:
        engine.dispose()
    tids = []
    for qty in ("20", "10"):
        made = call(
            "POST",
            f"{central}{paths.TRANSFERS}",
            {"from_site": "S01", "to_site": "S02", "lines": [{"item_code": "PILL", "qty": qty}]},
            maker,
        )
        call("POST", f"{central}{paths.TRANSFERS}/{made['transfer_id']}/approve", {}, boss)
        tids.append(made["transfer_id"])
    tr1, tr2 = tids
    # S01 holds the pill at A-01 (received earlier at its edge): L1 and L2.
    ledger = Ledger(a.edge_db, site_id="S01")
    for lot, offset in (("L1", 30), ("L2", 60)):
        ledger.append(
            EventDraft(
                kind=EventKind.RECEIPT, item="PILL", lot=lot, expiry=day(offset),
                location="A-01", qty=Decimal(20), uom="EA", unit_cost=Decimal(4),
            )
        )  # fmt: skip
    ledger.close()
    for site in (a, b):
        site.start_scanner()
        site.start_edge()
        eventually(lambda site=site: open_at(site) == [tr1, tr2], what=f"{site.site_id} feed")
    eventually(lambda: pushed(a), what="S01's receipts at central")
    assert stock(a) == {("A-01", "L1"): Decimal(20), ("A-01", "L2"): Decimal(20)}

    # --- Central down: S01 ships both, FEFO (TR1 takes L1; TR2 the rest of L1, then L2).
    stop(a.procs.pop("central"))
    scan(
        a,
        (tr1, f"{tr1} to S02"),
        ("A-01", "at A-01"),
        (carton("L1", day(30), 20), "OK PILL 20 lot L1"),
        ("DONE", f"DONE {tr1} SHIPPED: every line as ordered"),
        (tr2, f"{tr2} to S02"),
        ("A-01", "at A-01"),
        (carton("L2", day(60), 10), "OK PILL 10 lot L2"),
        ("DONE", f"DONE {tr2} SHIPPED: every line as ordered"),
    )
    assert not pushed(a), "nothing reached central while it was down"
    # S02's agent is stopped too, for a while.
    stop(b.procs.pop("edge"))
    a.start_central()
    eventually(lambda: pushed(a), what="S01's shipments at central")
    assert {status(a, tid) for tid in tids} == {"shipped"}
    assert in_transit(a) == {(tr1, "L1"): Decimal(20), (tr2, "L2"): Decimal(10)}
    assert stock(a) == {("A-01", "L2"): Decimal(10)}

    # --- Central down again: S02's agent comes back offline and receives from its cache;
    # a kill -9 in the middle of TR1 loses no scan.
    stop(a.procs.pop("central"))
    b.start_edge()
    scan(
        b,
        (tr1, f"{tr1} from S01"),
        ("B-01", "at B-01"),
        (carton("L1", day(30), 12), "OK 12 EA PILL lot L1"),
    )
    b.kill_edge()
    b.start_edge()
    scan(
        b,
        (tr1, f"{tr1} from S01"),
        ("B-01", "at B-01"),
        (carton("L1", day(30), 8), "OK 8 EA PILL lot L1"),
        ("DONE", f"DONE {tr1} RECEIVED: every line as ordered"),
        (tr2, f"{tr2} from S01"),
        ("B-01", "at B-01"),
        (carton("L2", day(60), 8), "OK 8 EA PILL lot L2"),
        ("DONE", f"DONE {tr2} RECEIVED: line 1 PILL 8/10 EA"),
    )
    assert open_at(a) == open_at(b) == []
    assert not pushed(b)

    # --- Central back: both close; TR1 whole, TR2 short by two, with both quantities.
    a.start_central()
    eventually(lambda: pushed(b), what="S02's arrivals at central")
    assert (status(a, tr1), status(a, tr2)) == ("received", "received")
    exceptions = get_json(f"{central}{paths.TRANSFER_EXCEPTIONS}?status=open")
    assert [
        (e["transfer_id"], e["kind"], e["lot"], e["shipped_qty"], e["received_qty"])
        for e in exceptions
    ] == [(tr2, "short", "L2", "10", "8")]
    assert in_transit(a) == {(tr2, "L2"): Decimal(2)}
    assert stock(a) == {("A-01", "L2"): Decimal(10)}
    assert stock(b) == {("B-01", "L1"): Decimal(20), ("B-01", "L2"): Decimal(8)}

    # --- A person resolves the short as lost: nothing is in transit any more.
    call(
        "POST",
        f"{central}{paths.TRANSFER_EXCEPTIONS}/{exceptions[0]['exception_id']}/resolve?lost=true",
        {"resolution": "two boxes lost on the way"},
    )
    assert in_transit(a) == {}
    assert get_json(f"{central}{paths.TRANSFER_EXCEPTIONS}?status=open") == []
    assert stock(a) == {("A-01", "L2"): Decimal(10)}
    assert stock(b) == {("B-01", "L1"): Decimal(20), ("B-01", "L2"): Decimal(8)}
