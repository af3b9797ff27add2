"""The receiving station: a scanned carton becomes a ``receipt`` in the local ledger.

The walking skeleton books every accepted scan as received stock at the station's
location. A GS1 code gives the item (GTIN), lot, expiry and count (AI 30/37); any other
symbology books one unit of the code as the item. Matching against open purchase-order
lines, weighing and labelling come with the later stations.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from device_drivers.scanners import Scan
from edge_agent.ledger import EventDraft, Ledger
from jxc.contract import EventKind, LedgerEvent

log = logging.getLogger("edge_agent.receiving")


class ReceivingStation:
    """Books scans as receipts; one instance per site, shared by its scanners."""

    def __init__(self, ledger: Ledger, *, location: str, uom: str) -> None:
        self.ledger = ledger
        self.location = location
        self.uom = uom

    def draft_for(self, scan: Scan) -> EventDraft:
        """The receipt a scan stands for (pure, so it is easy to test)."""
        gs1 = scan.gs1
        item = (gs1.gtin if gs1 and gs1.gtin else None) or scan.data
        qty = Decimal(gs1.count) if gs1 and gs1.count else Decimal(1)
        return EventDraft(
            kind=EventKind.RECEIPT,
            item=item,
            lot=gs1.lot if gs1 else None,
            expiry=gs1.expiry if gs1 else None,
            location=self.location,
            qty=qty,
            uom=self.uom,
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
