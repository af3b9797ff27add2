"""A whole receiving station in real processes: scanner, scale and printer at one dock.

Central and the edge agent run as the CLI starts them; the scanner twin runs as
``jxc sim scanner``; the MT-SICS scale (on a pty) and the ZPL printer (on a loopback TCP
port) are twins in this process. Rice is kept by weight and booked at the scale's stable
weight; mugs are counted. Every booking gets one label, including across a paper-out and a
``kill -9`` of the agent with labels still owed.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from jxc import paths
from simulators.printer import ZplPrinterTwin
from simulators.scale import MtSicsScaleTwin
from tests.dock import DockTwins
from tests.integration.processes import Site, Zygote, admin_headers, eventually, get_json, rows
from tests.patience import patience_timeout

pytestmark = pytest.mark.integration

RICE_CODE = "09506000134376"
MUG_CODE = "5901234123457"
ITEMS = {
    "RICE-BULK": {"name": "Jasmine rice, bulk", "uom": "kg", "barcodes": [{"barcode": RICE_CODE}]},
    "MUG-WHITE": {"name": "White mug", "uom": "EA", "barcodes": [{"barcode": MUG_CODE}]},
}


@dataclass
class Dock:
    site: Site
    twins: DockTwins

    @property
    def scale(self) -> MtSicsScaleTwin:
        return self.twins.scale

    @property
    def printer(self) -> ZplPrinterTwin:
        return self.twins.printer

    @printer.setter
    def printer(self, twin: ZplPrinterTwin) -> None:
        self.twins.printer = twin


def put(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"content-type": "application/json", **admin_headers(url)},
    )
    with urllib.request.urlopen(request, timeout=patience_timeout(5)):
        pass


@pytest.fixture
def dock(tmp_path: Path, zygote: Zygote) -> Iterator[Dock]:
    twins = DockTwins.start(tmp_path, scanner=False)  # the scanner runs as jxc sim scanner
    site = Site(
        tmp_path,
        receiving_extra='scale = "scale-1"\nprinter = "printer-1"\nweigh_timeout_s = 5',
        devices_extra=twins.devices_toml(reply_timeout=0.5),
        zygote=zygote,
    )
    dock = Dock(site, twins)
    try:
        site.start_central()
        for code, body in ITEMS.items():
            put(f"{site.central_url}{paths.ITEMS}/{code}", body)
        site.start_scanner()
        site.start_edge()
        eventually(
            lambda: site.edge_status()["master_data"]["cached"]["items"] == 2,
            what="the edge to pull the two items",
        )
        yield dock
    finally:
        site.stop_all()
        twins.close()  # the printer there now (a test may have switched it off and on)


def stock(site: Site) -> dict[str, tuple[Decimal, str]]:
    rows_ = get_json(f"{site.central_url}{paths.STOCK}?site_id={site.site_id}")
    return {row["item"]: (Decimal(row["qty"]), row["uom"]) for row in rows_}


def central_event_ids(site: Site) -> list[str]:
    return [
        str(e) for (e,) in rows(site.central_db, "SELECT event_id FROM ledger_events ORDER BY seq")
    ]


def test_a_dock_weighs_counts_labels_and_books_exactly_once(dock: Dock) -> None:
    site = dock.site
    dock.scale.set_weight(Decimal("18.5"), "kg", settle=0.5)
    site.scan(RICE_CODE)
    for _ in range(3):
        site.scan(MUG_CODE)
    eventually(lambda: len(central_event_ids(site)) == 4, within=60, what="4 bookings at central")
    assert stock(site) == {"RICE-BULK": (Decimal("18.5"), "kg"), "MUG-WHITE": (Decimal(3), "EA")}
    eventually(lambda: len(dock.printer.labels()) == 4, what="4 labels")
    assert dock.printer.job_ids() == central_event_ids(site)
    assert site.edge_status()["weighings"] == {"stable": 1, "failed": 0}

    # Paper out: the label waits (never sent to a printer that cannot print), scanning
    # goes on; paper back, it prints.
    dock.printer.set_paper_out(True)
    site.scan(MUG_CODE)
    eventually(lambda: labels(site).get("pending") == 1, what="the label waiting for paper")
    assert len(dock.printer.labels()) == 4
    dock.printer.set_paper_out(False)
    eventually(lambda: len(dock.printer.labels()) == 5, what="the waiting label printed")

    # Printer switched off: the next two bookings go through, their labels are owed.
    port = dock.printer.port
    dock.printer.close()
    site.scan(MUG_CODE)
    site.scan(MUG_CODE)
    eventually(lambda: len(central_event_ids(site)) == 7, within=60, what="7 bookings")
    eventually(lambda: labels(site).get("pending") == 2, what="two labels owed")
    # Power cut at the dock with the labels owed; then printer and agent come back.
    site.kill_edge()
    dock.printer = ZplPrinterTwin(port=port)
    site.start_edge()
    eventually(lambda: len(dock.printer.labels()) == 2, within=30, what="the owed labels")
    eventually(lambda: labels(site).get("pending") is None, what="every label settled")
    settled = labels(site)
    assert settled.get("printed", 0) + settled.get("delivered", 0) == 7, settled
    assert "failed" not in settled
    assert dock.printer.job_ids() == central_event_ids(site)[5:], "each owed label once"
    assert site.edge_status()["weighings"] == {"stable": 0, "failed": 0}  # a new process
    assert stock(site)["MUG-WHITE"] == (Decimal(6), "EA")


def labels(site: Site) -> dict[str, Any]:
    counts: dict[str, Any] = site.edge_status()["printers"][0]["labels"]
    return counts


def test_a_weight_that_does_not_settle_books_nothing(dock: Dock) -> None:
    site = dock.site
    dock.scale.wobble(30)
    site.scan(RICE_CODE)
    eventually(lambda: site.edge_status()["weighings"]["failed"] == 1, within=20, what="refusal")
    assert site.edge_status()["ledger"]["last_seq"] == 0
    assert dock.printer.labels() == []
    dock.scale.clear_faults()  # the sack came to rest
    dock.scale.set_weight(Decimal("7.25"), "kg")
    site.scan(RICE_CODE)
    eventually(lambda: len(central_event_ids(site)) == 1, within=60, what="the reweighed sack")
    assert stock(site) == {"RICE-BULK": (Decimal("7.25"), "kg")}
