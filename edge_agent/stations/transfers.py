"""The transfer stations (调拨): goods leave one site on an approved transfer order and
arrive at another, each end scanning at its own edge, offline or not.

Transfer orders come from central through the change feed (``transfer``, cached by
:class:`edge_agent.catalog.Catalog`), to both ends. A site is the sending end of a transfer
(``from_site``: the station ships) or its receiving end (``to_site``: it receives); the
same station does both, by the transfer scanned. Every scan answers on the display line:

1. the transfer's id (``TR000001``, the order's barcode) selects it;
2. a location code: where the goods are taken from (sending: never a quarantine, damaged
   or in-transit location, nor an inactive one) or put (receiving: never an in-transit or
   inactive one); a code the edge does not know is taken, stock is where the edge says;
3. a carton: a GS1 code (GTIN (01), lot (10), expiry (17), count (30/37)) or an item
   barcode.

   *Sending*: an item of the transfer with something left to ship on a line; never more
   than the line still needs. Lots are chosen **FEFO** from what this edge's ledger holds
   at the location (less what was scanned and not booked yet): a carton's own lot is
   refused when it has expired, and when it expires later than the first-expiring lot
   that has not (refused, or taken with a warning by site policy ``later_expiry``, as
   picking does). A plain item barcode takes the first-expiring unexpired lots, split as
   needed; it is refused when they hold too little (expired stock is written off, never
   transferred); an item the location holds no lot of goes without one.

   *Receiving*: an item of the transfer, with the lot and expiry on its label: what
   arrived is a fact, so a lot that never left, more than the line, even an expired lot
   are taken (the display says so) and become central's arrival exceptions; an item
   that is on no line of the transfer is refused (set it aside: no line can name it).
4. ``DONE`` ends this site's side of the transfer: in **one** SQLite transaction its
   scans become events (``transfer_out`` / ``transfer_in``, one per line, location and
   lot, naming ``doc_type = "transfer_order"``, the transfer and its line), the last one
   marked ``ref = "transfer complete"`` (:data:`jxc.feed.TRANSFER_COMPLETE`). The display
   lists each line's difference from the order.

A scan is recorded at once (``transfer_scans``, in the ledger file), so a restart loses
none; it becomes an event at ``DONE``, when the side is complete: the marked last event
tells central that nothing more comes from this end. Central counts the events into what
is in transit as they arrive, and once it holds both ends' marked events (in whichever
order the two edges got online) closes the transfer and raises the differences.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final, Literal

from device_drivers.scanners import Scan
from edge_agent.ledger import EventDraft
from edge_agent.stations.errors import StationError
from edge_agent.stations.scan_station import UNSELLABLE_KINDS, LaterExpiry, Place, ScanStation
from jxc.contract import EventKind, LedgerEvent
from jxc.feed import TRANSFER_COMPLETE, TransferData, TransferLineData

log = logging.getLogger("edge_agent.transfers")

Direction = Literal["out", "in"]
DONE = "DONE"
TRANSFER_ORDER: Final = "transfer_order"
_ZERO = Decimal(0)


class TransferRefusedError(StationError):
    """The scan cannot be taken (wrong item, lot, expiry, location, nothing selected)."""


@dataclass(frozen=True, slots=True)
class TransferScan:
    """One accepted carton (or the part of it taken from one lot)."""

    scan_id: int
    transfer_id: str
    direction: Direction
    line_no: int
    item: str
    lot: str | None
    expiry: date | None
    location: str
    qty: Decimal
    uom: str
    device_id: str | None
    seq: int | None
    """The event it was booked as, once its side is done."""


@dataclass(frozen=True, slots=True)
class LineResult:
    """A line at ``DONE``: the order's quantity and what this side scanned."""

    line_no: int
    item: str
    ordered: Decimal
    scanned: Decimal
    uom: str


@dataclass(frozen=True, slots=True)
class Done:
    """A side ended: its booked events and each line against the order."""

    transfer_id: str
    direction: Direction
    events: list[LedgerEvent]
    lines: list[LineResult]


_Take = tuple[str | None, date | None, Decimal]
"""Part of a carton: its lot, the lot's expiry, the quantity."""


@dataclass(frozen=True, slots=True)
class _Carton:
    """A carton scanned for a transfer line, before it is recorded."""

    transfer_id: str
    line: TransferLineData
    scan: Scan
    qty: Decimal
    lot: str | None
    expiry: date | None
    before: Decimal
    """What this side had scanned for the line before it."""


@dataclass(frozen=True, slots=True)
class _Lot:
    lot: str
    expiry: date | None
    available: Decimal


@dataclass(slots=True)
class TransferStation(ScanStation):
    """Ships and receives the site's transfers; one per scanner, sharing the ledger."""

    later_expiry: LaterExpiry = "refuse"
    warnings: int = 0

    refusal = TransferRefusedError
    logger = log
    refused_event = "transfer scan refused"
    select_first = "scan a transfer (its order number) first"
    selected_key = "transfer"

    @property
    def transfer_id(self) -> str | None:
        """The selected transfer."""
        return self.selected

    @property
    def site_id(self) -> str:
        return self.ledger.site_id

    # --- scans -----------------------------------------------------------------------------

    def take(self, scan: Scan, data: str, today: date) -> object:
        """``DONE``, a transfer, a location, else a carton to ship or receive."""
        if data.upper() == DONE:
            return self.done(scan.device_id)
        if scan.gs1 is None and (transfer := self.catalog.transfer(data)) is not None:
            return self._select(transfer)
        if (place := self.place_of(scan, data)) is not None:
            return self.at(place)
        return self.carton(scan, today)

    def _direction(self, transfer: TransferData) -> Direction:
        if transfer.from_site == self.site_id:
            return "out"
        if transfer.to_site == self.site_id:
            return "in"
        raise TransferRefusedError(f"REFUSED: {transfer.transfer_id} is not this site's transfer")

    def _select(self, transfer: TransferData) -> TransferData:
        direction = self._direction(transfer)
        if self.is_done(transfer.transfer_id, direction):
            verb = "shipped" if direction == "out" else "received"
            raise TransferRefusedError(f"REFUSED: {transfer.transfer_id} is {verb} here already")
        self.select(transfer.transfer_id)
        if direction == "out":
            self.display = (
                f"{transfer.transfer_id} to {transfer.to_site}: ship {len(transfer.lines)}"
                " line(s); scan the location you take from"
            )
        else:
            self.display = (
                f"{transfer.transfer_id} from {transfer.from_site}: receive; scan the"
                " location you put the goods"
            )
        return transfer

    def check_place(self, place: Place) -> None:
        direction = self._direction(self._selected())
        barred = UNSELLABLE_KINDS if direction == "out" else frozenset({"in_transit"})
        self.bar_place(place, barred, "shipped from" if direction == "out" else "received into")

    def _selected(self) -> TransferData:
        return self.still_open(
            self.catalog.transfer, "was cancelled or closed; move nothing more on it"
        )

    def carton(self, scan: Scan, today: date) -> list[TransferScan]:
        """Take one carton for the selected transfer (see the module's rules)."""
        transfer = self._selected()
        direction = self._direction(transfer)
        if self.location is None:
            where = "take the carton from" if direction == "out" else "put the carton"
            raise TransferRefusedError(f"REFUSED: scan the location you {where} first")
        scanned_carton, known = self.active_item(scan)
        lines = [line for line in transfer.lines if line.item_code == known.item_code]
        if not lines:
            raise TransferRefusedError(
                f"REFUSED: {known.item_code} is on no line of {transfer.transfer_id};"
                " set it aside and tell the office"
            )
        scanned = self._scanned(transfer.transfer_id, direction)
        open_lines = [line for line in lines if scanned[line.line_no] < line.qty]
        if direction == "out" and not open_lines:
            raise TransferRefusedError(
                f"REFUSED: nothing is left to ship of {known.item_code} on {transfer.transfer_id}"
            )
        carton = _Carton(
            transfer_id=transfer.transfer_id,
            line=(open_lines or lines[-1:])[0],
            scan=scan,
            qty=Decimal(scanned_carton.count) * known.qty_per,
            lot=scanned_carton.lot or None,
            expiry=scanned_carton.expiry,
            before=scanned[(open_lines or lines[-1:])[0].line_no],
        )
        if direction == "out":
            return self._ship(carton, today)
        return self._receive(carton)

    def _ship(self, carton: _Carton, today: date) -> list[TransferScan]:
        line, qty = carton.line, carton.qty
        left = line.qty - carton.before
        if qty > left:
            raise TransferRefusedError(
                f"REFUSED: {qty} {line.uom} of {line.item_code} is more than line"
                f" {line.line_no} still needs ({left} {line.uom}); take a smaller carton"
            )
        takes, warning = self._fefo(carton, today)
        made = self._record(carton, "out", takes)
        lots = ", ".join(f"{take} lot {each or '-'}" for each, _e, take in takes)
        what = (
            f"{line.item_code} {lots}"
            f" (line {line.line_no}: {carton.before + qty}/{line.qty} {line.uom})"
        )
        if warning:
            self.warnings += 1
            self.display = f"{warning} {what}"
        else:
            self.display = f"OK {what}"
        return made

    def _fefo(self, carton: _Carton, today: date) -> tuple[list[_Take], str | None]:
        """The lots a sent carton is taken from, and a warning to show (see the module)."""
        assert self.location is not None
        line, qty, lot, expiry = carton.line, carton.qty, carton.lot, carton.expiry
        stock = self._lots(line.item_code, self.location)
        fresh = sorted(
            (held for held in stock.values() if held.available > 0 and _fresh(held, today)),
            key=lambda held: (held.expiry or date.max, held.lot),
        )
        if lot is None:
            if not any(held.available > 0 for held in stock.values()):
                return [(None, expiry, qty)], None
            takes: list[_Take] = []
            want = qty
            for held in fresh:
                take = min(want, held.available)
                takes.append((held.lot, held.expiry, take))
                want -= take
                if want <= 0:
                    return takes, None
            have = sum((held.available for held in fresh), _ZERO)
            raise TransferRefusedError(
                f"REFUSED: {self.location} holds {have} {line.uom} of {line.item_code} in"
                f" unexpired lots, {qty} asked; expired stock is written off, not transferred"
            )
        held_lot = stock.get(lot)
        if expiry is None and held_lot is not None:
            expiry = held_lot.expiry
        if expiry is not None and expiry <= today:
            raise TransferRefusedError(
                f"REFUSED lot {lot}: EXPIRED (expires {expiry}); expired stock is written"
                " off, not transferred"
            )
        first = next((each for each in fresh if each.lot != lot), None)
        if first is None or first.expiry is None or (expiry is not None and expiry <= first.expiry):
            return [(lot, expiry, qty)], None
        reason = (
            f"lot {lot} expires {expiry or 'unknown'}, after lot {first.lot}"
            f" ({first.expiry}) held here: first expiry first"
        )
        if self.later_expiry == "refuse":
            raise TransferRefusedError(f"REFUSED {reason}; take lot {first.lot}")
        return [(lot, expiry, qty)], f"WARNING {reason};"

    def _receive(self, carton: _Carton) -> list[TransferScan]:
        line, qty, lot, expiry = carton.line, carton.qty, carton.lot, carton.expiry
        made = self._record(carton, "in", [(lot, expiry, qty)])
        done_now = carton.before + qty
        what = (
            f"{qty} {line.uom} {line.item_code} lot {lot or '-'}"
            f" (line {line.line_no}: {done_now}/{line.qty} {line.uom})"
        )
        notes = []
        if done_now > line.qty:
            notes.append("more than ordered")
        if expiry is not None and expiry <= carton.scan.received_at.astimezone(UTC).date():
            notes.append(f"EXPIRED {expiry}: keep it apart")
        if notes:
            self.warnings += 1
            self.display = f"WARNING {'; '.join(notes)}: {what}"
        else:
            self.display = f"OK {what}"
        return made

    def _record(
        self, carton: _Carton, direction: Direction, takes: list[_Take]
    ) -> list[TransferScan]:
        assert self.location is not None
        transfer_id, line, scan = carton.transfer_id, carton.line, carton.scan
        made = []
        with self.ledger.transaction() as conn:
            for lot, expiry, qty in takes:
                cursor = conn.execute(
                    "INSERT INTO transfer_scans (transfer_id, direction, line_no, item, lot,"
                    " expiry, location, qty, uom, device_id, scanned_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        transfer_id,
                        direction,
                        line.line_no,
                        line.item_code,
                        lot,
                        expiry.isoformat() if expiry else None,
                        self.location,
                        format(qty, "f"),
                        line.uom,
                        scan.device_id,
                        scan.received_at.isoformat(),
                    ),
                )
                made.append(
                    TransferScan(
                        scan_id=int(cursor.lastrowid or 0),
                        transfer_id=transfer_id,
                        direction=direction,
                        line_no=line.line_no,
                        item=line.item_code,
                        lot=lot,
                        expiry=expiry,
                        location=self.location,
                        qty=qty,
                        uom=line.uom,
                        device_id=scan.device_id,
                        seq=None,
                    )
                )
        return made

    # --- what is scanned and held ------------------------------------------------------------

    def scans(self, transfer_id: str, direction: Direction) -> list[TransferScan]:
        """Every scan of one side of a transfer, booked or not, in the order taken."""
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT scan_id, line_no, item, lot, expiry, location, qty, uom, device_id, seq"
                " FROM transfer_scans WHERE transfer_id = ? AND direction = ? ORDER BY scan_id",
                (transfer_id, direction),
            ).fetchall()
        return [
            TransferScan(
                scan_id=int(r[0]),
                transfer_id=transfer_id,
                direction=direction,
                line_no=int(r[1]),
                item=r[2],
                lot=r[3],
                expiry=date.fromisoformat(r[4]) if r[4] else None,
                location=r[5],
                qty=Decimal(r[6]),
                uom=r[7],
                device_id=r[8],
                seq=None if r[9] is None else int(r[9]),
            )
            for r in rows
        ]

    def _scanned(self, transfer_id: str, direction: Direction) -> dict[int, Decimal]:
        """Per line, what this side has scanned (summed exactly, never as SQLite floats)."""
        per_line: dict[int, Decimal] = defaultdict(Decimal)
        for each in self.scans(transfer_id, direction):
            per_line[each.line_no] += each.qty
        return per_line

    def _lots(self, item: str, location: str) -> dict[str, _Lot]:
        """What the ledger holds of ``item`` at ``location`` per lot, less the sending
        scans there not booked yet; each lot's expiry as its events state it."""
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT lot, group_concat(qty, ' '), MAX(json_extract(body, '$.expiry'))"
                " FROM events WHERE item = ? AND location = ? AND lot IS NOT NULL"
                " GROUP BY lot",
                (item, location),
            ).fetchall()
            owed = conn.execute(
                "SELECT lot, qty, expiry FROM transfer_scans WHERE item = ? AND location = ?"
                " AND direction = 'out' AND seq IS NULL AND lot IS NOT NULL",
                (item, location),
            ).fetchall()
        held: dict[str, _Lot] = {}
        for lot, quantities, expiry in rows:
            total = sum((Decimal(q) for q in quantities.split()), _ZERO)
            held[lot] = _Lot(lot, date.fromisoformat(expiry) if expiry else None, total)
        for lot, qty, expiry in owed:
            was = held.get(lot) or _Lot(lot, date.fromisoformat(expiry) if expiry else None, _ZERO)
            held[lot] = _Lot(lot, was.expiry, was.available - Decimal(qty))
        return held

    def is_done(self, transfer_id: str, direction: Direction) -> bool:
        with self.ledger.reading() as conn:
            row = conn.execute(
                "SELECT 1 FROM transfers_done WHERE transfer_id = ? AND direction = ?",
                (transfer_id, direction),
            ).fetchone()
        return row is not None

    def open_transfers(self) -> list[tuple[TransferData, Direction]]:
        """The site's transfers whose side here is not done, with that side."""
        found = []
        for transfer in self.catalog.transfers():
            if self.site_id not in (transfer.from_site, transfer.to_site):
                continue
            direction = self._direction(transfer)
            if not self.is_done(transfer.transfer_id, direction):
                found.append((transfer, direction))
        return found

    # --- ending a side -----------------------------------------------------------------------

    def done(self, device_id: str | None = None, *, now: datetime | None = None) -> Done:
        """End this site's side of the selected transfer: book its scans as events, the
        last one marked, all in one transaction."""
        transfer = self._selected()
        direction = self._direction(transfer)
        pending = [s for s in self.scans(transfer.transfer_id, direction) if s.seq is None]
        if not pending:
            raise TransferRefusedError(
                f"REFUSED: nothing is scanned for {transfer.transfer_id}; scan the goods first"
                " (if none went or came, tell the office)"
            )
        grouped: dict[tuple[int, str, str | None], list[TransferScan]] = defaultdict(list)
        for each in pending:
            grouped[(each.line_no, each.location, each.lot)].append(each)
        kind, sign = (
            (EventKind.TRANSFER_OUT, -1) if direction == "out" else (EventKind.TRANSFER_IN, 1)
        )
        self.ledger.check_free_disk()
        events = []
        with self.ledger.transaction() as conn:
            groups = list(grouped.values())
            for index, group in enumerate(groups):
                first = group[0]
                event = self.ledger.append_in(
                    conn,
                    EventDraft(
                        kind=kind,
                        item=first.item,
                        lot=first.lot,
                        expiry=next((s.expiry for s in group if s.expiry), None),
                        location=first.location,
                        qty=sign * sum((s.qty for s in group), _ZERO),
                        uom=first.uom,
                        ref=TRANSFER_COMPLETE if index == len(groups) - 1 else None,
                        device_id=device_id or first.device_id,
                        doc_type=TRANSFER_ORDER,
                        doc_id=transfer.transfer_id,
                        doc_line=first.line_no,
                    ),
                    occurred_at=now,
                )
                _mark_booked(conn, event.seq, [s.scan_id for s in group])
                events.append(event)
            conn.execute(
                "INSERT INTO transfers_done (transfer_id, direction, last_seq, done_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    transfer.transfer_id,
                    direction,
                    events[-1].seq,
                    (now or datetime.now(UTC)).isoformat(),
                ),
            )
        scanned = self._scanned(transfer.transfer_id, direction)
        lines = [
            LineResult(line.line_no, line.item_code, line.qty, scanned[line.line_no], line.uom)
            for line in transfer.lines
        ]
        verb = "SHIPPED" if direction == "out" else "RECEIVED"
        differ = [line for line in lines if line.scanned != line.ordered]
        self.display = f"DONE {transfer.transfer_id} {verb}" + (
            ": "
            + "; ".join(
                f"line {line.line_no} {line.item} {line.scanned}/{line.ordered} {line.uom}"
                for line in differ
            )
            if differ
            else ": every line as ordered"
        )
        log.info(
            "transfer side done",
            extra={"transfer_id": transfer.transfer_id, "direction": direction,
                   "events": len(events)},
        )  # fmt: skip
        self.selected, self.location = None, None
        return Done(transfer.transfer_id, direction, events, lines)

    def figures(self) -> dict[str, object]:
        """The transfer station's own entries of the status page: warnings, open sides."""
        return {
            "warnings": self.warnings,
            "open": [
                {"transfer_id": transfer.transfer_id, "direction": direction}
                for transfer, direction in self.open_transfers()
            ],
        }


def _fresh(held: _Lot, today: date) -> bool:
    return held.expiry is None or held.expiry > today


def _mark_booked(conn: sqlite3.Connection, seq: int, scan_ids: list[int]) -> None:
    conn.executemany(
        "UPDATE transfer_scans SET seq = ? WHERE scan_id = ?", [(seq, i) for i in scan_ids]
    )
