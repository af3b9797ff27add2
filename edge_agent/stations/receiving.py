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
lines is switched on by ``receiving.purchase_orders`` (see :meth:`ReceivingStation.receive`
and docs/purchasing.md, "At the edge").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

from device_drivers.errors import InvalidGs1Error
from device_drivers.scales import GRAMS_PER_UNIT, Scale, ScaleError
from device_drivers.scanners import Scan
from device_drivers.scanners.gs1 import RETAIL_SYMBOLOGIES, check_gtin
from edge_agent.catalog import Catalog, OpenLine
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations import po_match
from edge_agent.stations.errors import (
    ChoiceNeededError,
    MisreadBarcodeError,
    UnknownBarcodeError,
    WeighingError,
)
from edge_agent.stations.scan_station import read_carton
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
        purchase_orders: bool = False,
        quarantine_location: str = "QUARANTINE",
        supplier: str | None = None,
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
        self.purchase_orders = purchase_orders
        self.quarantine_location = quarantine_location
        self.supplier = supplier
        """The supplier whose delivery is on the dock, when known: narrows the matching."""
        self.display = ""
        """The station's display line: what the operator reads after each scan."""
        self.pending_choice: PendingChoice | None = None
        self.quarantined: list[QuarantineNote] = [
            QuarantineNote.from_event(event)
            for event in catalog.quarantined_recently(quarantine_location)
        ]
        """The latest quarantine bookings with their reasons (the status page shows them)."""
        self.duplicates = 0

    def draft_for(self, scan: Scan) -> EventDraft:
        """The receipt a scan stands for."""
        carton = read_carton(self.catalog, scan)
        gtin, known, packs = carton.gtin, carton.known, Decimal(carton.count)
        if known is not None and known.active:
            item, qty, uom = known.item_code, packs * known.qty_per, known.uom
        else:
            if known is None and gtin is None:
                self._check_bare_number(scan)
            self.unknown_scans += 1
            code = carton.code
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
            lot=carton.lot,
            expiry=carton.expiry,
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
        if self.purchase_orders:
            return self.receive(scan)
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

    # --- receiving against open PO lines -------------------------------------------------

    def receive(self, scan: Scan, *, today: date | None = None) -> LedgerEvent:
        """Book a carton against an open PO line of its item, or to quarantine with a reason.

        When several lines match, nothing is booked: the display line lists them and
        :class:`ChoiceNeededError` is raised; the next scan of ``1``, ``2``... (a keyed
        number, or a choice barcode on the dock's card) books the held carton against that
        line; any other scan drops the held one and is taken as a new carton.
        """
        today = today or datetime.now(UTC).date()
        held, self.pending_choice = self.pending_choice, None
        if held is not None and scan.data.isdigit() and 1 <= int(scan.data) <= len(held.lines):
            return self._book(held.scan, held.lines[int(scan.data) - 1], today)
        carton = read_carton(self.catalog, scan)
        gtin, known = carton.gtin, carton.known
        if known is None or not known.active:
            if known is None and gtin is None:
                self._check_bare_number(scan)
            self.unknown_scans += 1
            if self.unknown_barcodes == "refuse":
                return self._refuse_unknown(known.item_code if known else None, gtin or scan.data)
            return self._book(scan, None, today, unknown=gtin or scan.data)
        lines = po_match.candidates(self.catalog.open_lines(known.item_code, self.supplier))
        if len(lines) > 1:
            self.pending_choice = PendingChoice(scan, tuple(lines))
            choices = "; ".join(
                f"{n}) {line.po_id}/{line.line_no} {line.supplier} open {line.remaining} {line.uom}"
                for n, line in enumerate(lines, 1)
            )
            self.display = f"{known.item_code}: {len(lines)} open PO lines, pick one: {choices}"
            raise ChoiceNeededError(self.display)
        return self._book(scan, lines[0] if lines else None, today)

    def _refuse_unknown(self, item: str | None, code: str) -> LedgerEvent:
        if item is None:
            why = f"barcode {code} is not known at this site; nothing was booked"
        else:
            why = f"barcode {code} is for item {item}, which is inactive; nothing was booked"
        self.display = why
        raise UnknownBarcodeError(why)

    def _book(
        self, scan: Scan, line: OpenLine | None, today: date, *, unknown: str | None = None
    ) -> LedgerEvent:
        gs1 = scan.gs1
        gtin = (gs1.gtin or gs1.content_gtin) if gs1 else None
        carton = None
        if gs1 is not None and gs1.sscc:
            carton = f"sscc:{gs1.sscc}"
        elif gs1 is not None and gs1.serial:
            carton = f"serial:{gtin or ''}:{gs1.serial}"
        if carton is not None and (booked := self.ledger.carton_event(carton)) is not None:
            # Seen before: no weighing, no second booking, no second label.
            return self._duplicate(booked)
        known = None if unknown else self.catalog.lookup(gtin, scan.data)
        item = self.catalog.item(known.item_code) if known else None
        label_net = gs1.net_weight_kg if gs1 else None
        weight_kg: Decimal | None = None
        if self.scale is not None and (
            label_net is not None
            or (item is not None and (item.unit_weight or item.uom.lower() in GRAMS_PER_UNIT))
        ):
            weight_kg = self._weigh(item.item_code if item else scan.data, "kg")
        count = gs1.count if gs1 else None
        if known is None or item is None:
            qty, uom, code = Decimal(count or 1), self.uom, unknown or scan.data
            verdict: po_match.Quarantine | None = po_match.Quarantine(
                "unknown_item", f"unknown item {code}: not in this site's master data"
            )
        else:
            if item.uom.lower() in GRAMS_PER_UNIT and weight_kg is not None:
                qty = self._weigh_in(weight_kg, item.uom)
            else:
                qty = po_match.quantity(known, item, count=count, weight_kg=weight_kg)
            uom, code = item.uom, item.item_code
            verdict = po_match.check(
                item,
                line,
                qty,
                today=today,
                expiry=gs1.expiry if gs1 else None,
                weight_kg=None if item.uom.lower() in GRAMS_PER_UNIT else weight_kg,
                label_net_kg=label_net,
            )
        draft = EventDraft(
            kind=EventKind.RECEIPT,
            item=code,
            lot=gs1.lot if gs1 else None,
            expiry=gs1.expiry if gs1 else None,
            location=self.quarantine_location if verdict else self.location,
            qty=qty,
            uom=uom,
            device_id=scan.device_id,
            ref=QuarantineNote.ref_for(verdict.code, verdict.reason) if verdict else None,
            doc_type="purchase_order" if line else None,
            doc_id=line.po_id if line else None,
            doc_line=line.line_no if line else None,
        )
        event, new = self.ledger.append_once(
            draft, carton=carton, occurred_at=scan.received_at, label_printer=self.label_printer
        )
        if not new:  # booked by another scanner between the check above and now
            return self._duplicate(event)
        where = f"{line.po_id}/{line.line_no}" if line else "no PO line"
        if verdict:
            self.display = (
                f"QUARANTINE {event.qty} {event.uom} {event.item} ({where}): {verdict.reason}"
            )
            self.quarantined = [
                QuarantineNote(event.seq, event.item, where, verdict.code, verdict.reason),
                *self.quarantined[:49],
            ]
        else:
            self.display = f"OK {event.qty} {event.uom} {event.item} -> {where}"
        if line is not None and event.uom == line.uom:
            counted = replace(line, received=line.received + event.qty)
            self.display += f"; {po_match.line_note(counted)}"
        log.info(
            "received",
            extra={
                "site": event.site_id,
                "seq": event.seq,
                "item": event.item,
                "qty": str(event.qty),
                "po_line": where,
                "quarantine": verdict.code if verdict else None,
            },
        )
        return event

    def _duplicate(self, event: LedgerEvent) -> LedgerEvent:
        self.duplicates += 1
        self.display = (
            f"already booked: {event.qty} {event.uom} {event.item} (seq {event.seq});"
            " nothing booked again"
        )
        log.info("carton scanned again", extra={"seq": event.seq, "item": event.item})
        return event

    def _weigh_in(self, weight_kg: Decimal, uom: str) -> Decimal:
        """A weight read in kg, in the item's own weight unit."""
        factor = GRAMS_PER_UNIT["kg"] / GRAMS_PER_UNIT[uom.lower()]
        value = weight_kg * factor
        if value.as_tuple().exponent < -WEIGHT_PLACES:  # type: ignore[operator]
            value = round(value, WEIGHT_PLACES)
        return value

    def receiving_report(self, today: date | None = None) -> dict[str, object]:
        """What the status page shows of receiving: open lines, received today, quarantine."""
        today = today or datetime.now(UTC).date()
        return {
            "display": self.display,
            "awaiting_choice": bool(self.pending_choice),
            "duplicates": self.duplicates,
            "open_lines": [
                {
                    "po_id": line.po_id,
                    "line_no": line.line_no,
                    "supplier": line.supplier,
                    "item": line.item_code,
                    "ordered": str(line.qty),
                    "received": str(line.received),
                    "uom": line.uom,
                    "complete_at": format(line.floor.normalize(), "f"),
                    "state": line.state.value,
                }
                for line in self.catalog.open_lines()
            ],
            "received_today": [
                {
                    "seq": r.seq,
                    "item": r.item,
                    "qty": str(r.qty),
                    "uom": r.uom,
                    "lot": r.lot,
                    "location": r.location,
                    "po_line": f"{r.po_id}/{r.line_no}" if r.po_id else None,
                    "note": r.ref,
                }
                for r in self.catalog.received_on(today)[:100]
            ],
            "quarantined": [note.__dict__ for note in self.quarantined],
        }


@dataclass(frozen=True, slots=True)
class PendingChoice:
    """A carton held until the operator picks one of ``lines``."""

    scan: Scan
    lines: tuple[OpenLine, ...]


@dataclass(frozen=True)
class QuarantineNote:
    seq: int
    item: str
    po_line: str
    code: str
    reason: str

    @staticmethod
    def ref_for(code: str, reason: str) -> str:
        """The receipt's ``ref``: the reason travels with the event (to central, and back to
        this list after a restart)."""
        return f"quarantine {code}: {reason}"[:128]

    @classmethod
    def from_event(cls, event: LedgerEvent) -> QuarantineNote:
        """The note of a receipt booked with a ``ref_for`` reference."""
        code, _, reason = (event.ref or "").removeprefix("quarantine ").partition(": ")
        where = f"{event.doc_id}/{event.doc_line}" if event.doc_id else "no PO line"
        return cls(event.seq, event.item, where, code, reason)
