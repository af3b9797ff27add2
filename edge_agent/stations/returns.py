"""The returns station (退货收货): goods a customer sends back on an authorised return
(RMA) are received at the site, offline or not, into its returns location.

Authorised returns come from central through the change feed (``customer_return``, cached
by :class:`edge_agent.catalog.Catalog`); a tombstone (received at central, or closed)
removes one. Every scan answers on the display line:

1. the return's id (``RA000001``, on the customer's paperwork) selects it. A carton
   scanned with no return selected selects the one open return that expects its item
   (and lot) and has something left to receive of it; when several do, the display asks
   for the return's number;
2. ``QTY <n>`` sets the quantity of the next carton (loose goods, a part of a carton);
   otherwise a carton counts its GS1 count (30/37) × the barcode's pack quantity;
3. a carton: a GS1 code (GTIN (01), lot (10), expiry (17), count) or an item barcode. It
   must be an item on a line of the return (else it is refused: set it aside, the office
   decides); a carton whose lot differs from the lot the line authorises is refused. It
   is booked **at once** as a ``return`` event into :attr:`ReturnsStation.location`
   (the site file's ``[returns] location``: a quarantine location, so the goods are not
   sold before a person has looked), naming the line (``doc_type = "customer_return"``,
   the return's id, its line), exactly once through the outbox like every event;
4. more than a line authorises (counting every ``return`` event this ledger holds for
   it, synced or not) is refused, or taken with a warning by site policy
   (``[returns] over = "warn"``): central then counts it and raises an exception;
5. ``DONE`` ends the return at this scanner and lists each line against what was
   authorised.

Central counts the events into the return (received quantities per line; the return is
``received`` from its first carton on), and restocking or scrapping each line proceeds
there (``docs/sales.md``).

The station is a :class:`~edge_agent.stations.scan_station.ScanStation` (the return is its
selected document): the scan flow, the refusal count and log, the selected return's
"closed meanwhile" refusal and the status page are the base's. It scans no location:
its :attr:`~ReturnsStation.location` is where every carton is booked, set by the site
file, never by a scan.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Final, Literal

from device_drivers.scanners import Scan
from edge_agent.ledger import EventDraft
from edge_agent.stations.counter import keyed_qty
from edge_agent.stations.errors import StationError
from edge_agent.stations.scan_station import ScanStation, read_carton
from jxc.contract import EventKind, LedgerEvent
from jxc.feed import ReturnData, ReturnLineData

log = logging.getLogger("edge_agent.returns")

CUSTOMER_RETURN: Final = "customer_return"
DONE, QTY = "DONE", "QTY"
OverPolicy = Literal["refuse", "warn"]
_ZERO = Decimal(0)
_MICRO = Decimal("0.000001")


class ReturnRefusedError(StationError):
    """The scan cannot be received (no return selected, an item or lot not on it, more
    than authorised): nothing was booked."""


@dataclass(frozen=True, slots=True)
class LineReceived:
    """A line of a return and what this site received of it."""

    line_no: int
    item: str
    authorised: Decimal
    received: Decimal
    uom: str


@dataclass(slots=True)
class ReturnsStation(ScanStation):
    """Receives the site's authorised customer returns; one per scanner, sharing the ledger."""

    over: OverPolicy = "refuse"
    location: str = field(default="RETURNS", kw_only=True)
    """Where returned goods are booked: the site's returns (quarantine) location (the
    base's scanned location; this station scans none)."""
    next_qty: Decimal | None = field(default=None, kw_only=True)
    warnings: int = field(default=0, kw_only=True)

    refusal = ReturnRefusedError
    logger = log
    refused_event = "return scan refused"
    select_first = "scan a return (its RA number) first"
    selected_key = "return"

    @property
    def return_id(self) -> str | None:
        """The selected return."""
        return self.selected

    # --- scans -----------------------------------------------------------------------------

    def take(self, scan: Scan, data: str, today: date) -> object:
        """``DONE``, ``QTY <n>``, a return's number, else a carton (in that order)."""
        word, _, rest = data.partition(" ")
        command = word.upper() if scan.gs1 is None else ""
        if command == DONE and not rest:
            return self.done()
        if command == QTY:
            return self._set_qty(rest.strip())
        if scan.gs1 is None and (rma := self.catalog.customer_return(data)) is not None:
            return self._select(rma)
        return self.carton(scan, today)

    def _set_qty(self, text: str) -> Decimal:
        qty = keyed_qty(text, ReturnRefusedError)
        self.next_qty = qty
        self.display = f"QTY {qty}: scan the carton"
        return qty

    def _select(self, rma: ReturnData) -> ReturnData:
        self.selected, self.next_qty = rma.return_id, None
        received = self.received(rma)
        left = sum(
            (max(line.qty - received.get(line.line_no, _ZERO), _ZERO) for line in rma.lines),
            _ZERO,
        )
        self.display = (
            f"{rma.return_id} from {rma.customer} ({rma.so_id}): {len(rma.lines)} line(s),"
            f" {left} to receive; scan the cartons"
        )
        return rma

    def _open(self) -> ReturnData:
        """The selected return as the feed last said (refused when none is selected, or
        central received or closed it meanwhile: it is then deselected)."""
        return self.still_open(
            self.catalog.customer_return,
            "was received at the office or closed; receive nothing more on it here"
            " (set the carton aside, tell the office)",
        )

    # --- a carton ----------------------------------------------------------------------------

    def carton(self, scan: Scan, today: date) -> LedgerEvent:
        """Receive one carton against the selected return (or the one open return that
        expects it): one ``return`` event, booked at once."""
        read = read_carton(self.catalog, scan)
        known = read.known
        if known is None:  # an inactive item is taken: it is coming back, not being sold
            raise ReturnRefusedError(
                f"REFUSED: {read.code} is no return, no QTY and no item known here"
            )
        lot, expiry = read.lot or None, read.expiry
        qty = self.next_qty if self.next_qty is not None else Decimal(read.count) * known.qty_per
        rma = self._open() if self.selected else self._expecting(known.item_code, lot)
        lines = [line for line in rma.lines if line.item_code == known.item_code]
        if not lines:
            raise ReturnRefusedError(
                f"REFUSED: {known.item_code} is on no line of {rma.return_id}; set it aside"
                " and tell the office (it was not authorised to come back)"
            )
        fitting = [line for line in lines if line.lot is None or lot is None or line.lot == lot]
        if not fitting:
            authorised = ", ".join(sorted({str(line.lot) for line in lines}))
            raise ReturnRefusedError(
                f"REFUSED lot {lot}: {rma.return_id} authorises {known.item_code} lot"
                f" {authorised} only; set the carton aside and tell the office"
            )
        self.ledger.check_free_disk()
        with self.ledger.transaction() as conn:
            # Counted inside the write transaction: two scanners cannot both take the rest.
            received = self._received_in(conn, rma)
            line = next(
                (each for each in fitting if received.get(each.line_no, _ZERO) < each.qty),
                fitting[-1],
            )
            before = received.get(line.line_no, _ZERO)
            warning = self._over(rma, line, before, qty)
            event = self.ledger.append_in(
                conn,
                EventDraft(
                    kind=EventKind.RETURN,
                    item=line.item_code,
                    lot=lot or line.lot,
                    expiry=expiry or line.expiry,
                    location=self.location,
                    qty=qty,
                    uom=line.uom,
                    device_id=scan.device_id,
                    doc_type=CUSTOMER_RETURN,
                    doc_id=rma.return_id,
                    doc_line=line.line_no,
                ),
            )
        self.selected, self.next_qty = rma.return_id, None
        what = (
            f"{qty} {line.uom} {line.item_code} lot {event.lot or '-'} into {self.location}"
            f" ({rma.return_id} line {line.line_no}: {before + qty}/{line.qty} {line.uom})"
        )
        notes = [warning] if warning else []
        if expiry is not None and expiry <= today:
            notes.append(f"EXPIRED {expiry}")
        if notes:
            self.warnings += 1
            self.display = f"WARNING {'; '.join(notes)}: {what}"
        else:
            self.display = f"OK {what}"
        log.info(
            "return received",
            extra={"return_id": rma.return_id, "line": line.line_no, "qty": str(qty)},
        )
        return event

    def _over(
        self, rma: ReturnData, line: ReturnLineData, before: Decimal, qty: Decimal
    ) -> str | None:
        """Refuse (or, by site policy, warn about) more than the line authorises."""
        if before + qty <= line.qty:
            return None
        left = max(line.qty - before, _ZERO)
        if self.over == "refuse":
            raise ReturnRefusedError(
                f"REFUSED: {qty} {line.uom} of {line.item_code} is more than {rma.return_id}"
                f" line {line.line_no} still expects ({left} {line.uom} of {line.qty});"
                " set the rest aside and tell the office"
            )
        return f"more than authorised ({line.qty} {line.uom}): the office is told"

    def _expecting(self, item: str, lot: str | None) -> ReturnData:
        """The one open return that still expects ``item`` (and ``lot``), for a carton
        scanned before any return's number."""
        candidates: list[ReturnData] = []
        for rma in self.catalog.customer_returns():
            received = self.received(rma)
            if any(
                line.item_code == item
                and (line.lot is None or lot is None or line.lot == lot)
                and received.get(line.line_no, _ZERO) < line.qty
                for line in rma.lines
            ):
                candidates.append(rma)
        if not candidates:
            raise ReturnRefusedError(
                f"REFUSED: no open return expects {item}{f' lot {lot}' if lot else ''}; scan"
                " the return's number, or set the carton aside and tell the office"
            )
        if len(candidates) > 1:
            raise ReturnRefusedError(
                f"REFUSED: {len(candidates)} returns expect {item}"
                f" ({', '.join(each.return_id for each in candidates[:5])});"
                " scan the return's number first"
            )
        return candidates[0]

    # --- what was received -------------------------------------------------------------------

    def received(self, rma: ReturnData) -> dict[int, Decimal]:
        """Per line, what this site's ledger received of ``rma`` (synced or not)."""
        with self.ledger.reading() as conn:
            return self._received_in(conn, rma)

    @staticmethod
    def _received_in(conn: sqlite3.Connection, rma: ReturnData) -> dict[int, Decimal]:
        rows = conn.execute(
            "SELECT doc_line, qty FROM events WHERE doc_id = ? AND kind = 'return'"
            " AND json_extract(body, '$.doc_type') = ?",
            (rma.return_id, CUSTOMER_RETURN),
        ).fetchall()
        per_line: dict[int, Decimal] = {}
        for line_no, qty in rows:  # summed exactly, never as SQLite floats
            per_line[int(line_no)] = per_line.get(int(line_no), _ZERO) + Decimal(qty)
        return per_line

    def lines(self, rma: ReturnData) -> list[LineReceived]:
        received = self.received(rma)
        return [
            LineReceived(
                line.line_no,
                line.item_code,
                line.qty,
                received.get(line.line_no, _ZERO),
                line.uom,
            )
            for line in rma.lines
        ]

    def done(self) -> list[LineReceived]:
        """End the selected return at this scanner: each line against what was authorised
        (what is missing may still come: the return stays open here until central closes
        it)."""
        rma = self._open()
        lines = self.lines(rma)
        differ = [line for line in lines if line.received != line.authorised]
        self.display = f"DONE {rma.return_id}: " + (
            "; ".join(
                f"line {line.line_no} {line.item} {line.received}/{line.authorised} {line.uom}"
                for line in differ
            )
            if differ
            else "every line as authorised"
        )
        self.selected, self.next_qty = None, None
        return lines

    def figures(self) -> dict[str, object]:
        """The returns station's own entries of the status page: warnings, open returns."""
        return {
            "warnings": self.warnings,
            "open": [rma.return_id for rma in self.catalog.customer_returns()],
        }
