"""The receiving station: a scanned carton becomes a ``receipt`` in the local ledger.

The scanned code is looked up in the site's cached master data (pulled from central), so
a case barcode books the item's code and its pack quantity, in the item's unit. A GS1
code adds lot, expiry and a count (AI 37/30) of those packs. What to do with a code the
site does not know is the site's choice (``receiving.unknown_barcodes``): ``book`` it
under the code itself, so the goods are on record and can be re-labelled later, or
``refuse`` it, so nothing unidentified ever enters stock. Matching against open
purchase-order lines, weighing and labelling come with the later stations.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Literal

from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger, LedgerError
from jxc.contract import EventKind, LedgerEvent

log = logging.getLogger("edge_agent.receiving")

UnknownBarcodes = Literal["book", "refuse"]


class UnknownBarcodeError(LedgerError):
    """The site refuses codes it does not know; the message is for the station's screen."""


class ReceivingStation:
    """Books scans as receipts; one instance per site, shared by its scanners."""

    def __init__(
        self,
        ledger: Ledger,
        catalog: Catalog,
        *,
        location: str,
        uom: str,
        unknown_barcodes: UnknownBarcodes = "book",
    ) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.location = location
        self.uom = uom
        self.unknown_barcodes = unknown_barcodes
        self.unknown_scans = 0

    def draft_for(self, scan: Scan) -> EventDraft:
        """The receipt a scan stands for."""
        gs1 = scan.gs1
        gtin = (gs1.gtin or gs1.content_gtin) if gs1 else None
        packs = Decimal(gs1.count) if gs1 and gs1.count else Decimal(1)
        known = self.catalog.lookup(gtin, scan.data)
        if known is not None and known.active:
            item, qty, uom = known.item_code, packs * known.qty_per, known.uom
        else:
            self.unknown_scans += 1
            code = gtin or scan.data
            if self.unknown_barcodes == "refuse" or known is not None:
                why = "is not known at this site" if known is None else "is for an inactive item"
                raise UnknownBarcodeError(f"barcode {code} {why}; nothing was booked")
            log.warning("unknown barcode booked under its own code", extra={"barcode": code})
            item, qty, uom = code, packs, self.uom
        return EventDraft(
            kind=EventKind.RECEIPT,
            item=item,
            lot=gs1.lot if gs1 else None,
            expiry=gs1.expiry if gs1 else None,
            location=self.location,
            qty=qty,
            uom=uom,
            device_id=scan.device_id,
        )

    def on_scan(self, scan: Scan) -> LedgerEvent:
        event = self.ledger.append(self.draft_for(scan), occurred_at=scan.received_at)
        log.info(
            "received",
            extra={
                "site": event.site_id,
                "seq": event.seq,
                "item": event.item,
                "lot": event.lot,
                "qty": str(event.qty),
                "device": scan.device_id,
            },
        )
        return event
