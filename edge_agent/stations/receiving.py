"""The receiving station: a scanned carton becomes a ``receipt`` in the local ledger.

The scanned code is looked up in the site's cached master data (pulled from central), so
a case barcode books the item's code and its pack quantity, in the item's unit. A GS1
code adds lot, expiry and a count (AI 37/30) of those packs. What to do with a code the
site does not know is the site's choice (``receiving.unknown_barcodes``): ``book`` it
under the code itself, so the goods are on record and can be re-labelled later, or
``refuse`` it, so nothing unidentified ever enters stock. An unknown bare number that will be
taken for a GTIN (12, 13 or 14 digits, from a keyboard or a scanner that sends no symbology
identifier) must have a right check digit: a misread EAN-13 is refused, never booked under
its own wrong number. The scanner drivers already refuse a misread EAN/UPC symbol or GS1 key.

With a scale (``receiving.scale``), goods kept by weight (the item's unit is kg, g, lb,
...) are booked at the scale's *stable* net weight, converted exactly to the item's unit;
a weighing that does not settle, or an overloaded or empty scale, refuses the scan and
books nothing, since a guessed weight in the ledger is worse than a rescan. With a printer
(``receiving.printer``), every booking also owes a label, queued in the same transaction
as the event (see :mod:`edge_agent.stations.labels`). Matching against open purchase-order
lines comes with the purchasing issue.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Literal

from device_drivers.errors import InvalidGs1Error
from device_drivers.scales import GRAMS_PER_UNIT, Scale, ScaleError
from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import RETAIL_SYMBOLOGIES, check_gtin
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.errors import MisreadBarcodeError, UnknownBarcodeError, WeighingError
from jxc.contract import EventKind, LedgerEvent

log = logging.getLogger("edge_agent.receiving")

UnknownBarcodes = Literal["book", "refuse"]


CHECKED_GTIN_LENGTHS = frozenset({12, 13, 14})
"""Bare numbers of these lengths are GTIN-12/13/14 (UPC-A, EAN-13, a case code) and are
looked up as such, so their check digit must hold. Eight digits are left alone: without a
symbology identifier an eight-digit number is as often an internal item number as an EAN-8
or UPC-E, which the drivers check when the scanner names the symbology."""

WEIGHT_PLACES = 6
"""Booked weights are rounded to this many places (a milligram in kilograms) only when the
conversion to the item's unit needs more, e.g. pounds to kilograms; the wire contract
holds six places."""


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
        scale: Scale | None = None,
        weigh_timeout_s: float = 5.0,
        label_printer: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.location = location
        self.uom = uom
        self.unknown_barcodes = unknown_barcodes
        self.scale = scale
        self.weigh_timeout_s = weigh_timeout_s
        self.label_printer = label_printer
        self.unknown_scans = 0
        self.misread_scans = 0
        self.weighings = 0
        self.failed_weighings = 0

    def draft_for(self, scan: Scan) -> EventDraft:
        """The receipt a scan stands for."""
        gs1 = scan.gs1
        gtin = (gs1.gtin or gs1.content_gtin) if gs1 else None
        packs = Decimal(gs1.count) if gs1 and gs1.count else Decimal(1)
        known = self.catalog.lookup(gtin, scan.data)
        if known is not None and known.active:
            item, qty, uom = known.item_code, packs * known.qty_per, known.uom
        else:
            if known is None and gtin is None:
                self._check_bare_number(scan)
            self.unknown_scans += 1
            code = gtin or scan.data
            if self.unknown_barcodes == "refuse" or known is not None:
                if known is None:
                    why = (
                        f"barcode {code} is not known at this site; nothing was booked. Ask the"
                        " office to add it to the item master data, then scan it again"
                    )
                else:
                    why = (
                        f"barcode {code} is for item {known.item_code}, which is inactive; "
                        "nothing was booked. Ask the office whether it is still received here"
                    )
                raise UnknownBarcodeError(why)
            log.warning("unknown barcode booked under its own code", extra={"barcode": code})
            item, qty, uom = code, packs, self.uom
        if self.scale is not None and uom.lower() in GRAMS_PER_UNIT:
            qty = self._weigh(item, uom)
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

    def _check_bare_number(self, scan: Scan) -> None:
        """Refuse a GTIN-shaped number the site does not know if its check digit is wrong.

        A known code is the site's own (master data may hold internal numbers without GS1
        check digits), and a number under another symbology (Code 128, Code 39) does not
        claim to be a GTIN; only an unidentified or EAN/UPC number is checked.
        """
        code = scan.data
        if not code.isdigit() or len(code) not in CHECKED_GTIN_LENGTHS:
            return
        if scan.symbology is not None and scan.symbology not in RETAIL_SYMBOLOGIES:
            return
        try:
            check_gtin(code)
        except InvalidGs1Error as exc:
            self.misread_scans += 1
            raise MisreadBarcodeError(
                f"{exc.detail}; nothing was booked. Probably a misread: scan it again, or type"
                " the number under the barcode"
            ) from exc

    def _weigh(self, item: str, uom: str) -> Decimal:
        """The stable net weight on the scale in ``uom``; WeighingError if there is none."""
        assert self.scale is not None
        try:
            reading = self.scale.read_stable(self.weigh_timeout_s)
        except ScaleError as exc:
            self.failed_weighings += 1
            raise WeighingError(
                f"{item}: no stable weight ({exc}); nothing was booked. Let the carton rest on"
                " the scale until it settles, then scan it again"
            ) from exc
        try:
            net = reading.net_in(uom.lower())
        except ValueError:  # no finite exact value in the item's unit
            net = reading.net_in(uom.lower(), places=WEIGHT_PLACES)
        if net.as_tuple().exponent < -WEIGHT_PLACES:  # type: ignore[operator]
            # Exact but longer than the ledger holds (55.12 lb is 25.0020114344 kg).
            net = reading.net_in(uom.lower(), places=WEIGHT_PLACES)
        if net <= 0:
            self.failed_weighings += 1
            raise WeighingError(
                f"{item}: the scale shows {net} {uom}; nothing was booked. Put the carton on"
                " the scale (and tare it empty if needed), then scan it again"
            )
        self.weighings += 1
        return net

    def on_scan(self, scan: Scan) -> LedgerEvent:
        event = self.ledger.append(
            self.draft_for(scan), occurred_at=scan.received_at, label_printer=self.label_printer
        )
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
