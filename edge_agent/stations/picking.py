"""The picking station: released pick lists are picked by scanning, packed into logistic
units with an SSCC label, and booked as ``issue`` events naming their sales-order line.

Pick lists come from central through the change feed (``pick_list``, cached by
:class:`edge_agent.catalog.Catalog`), so the station works offline. The picker drives it
with the same scanners as receiving; every scan answers on the display line:

1. the order's id (a pick list's barcode) selects the pick list;
2. a location code selects where the goods are taken from (a location of the site's tree
   that is quarantine, damaged or in transit is refused; one the edge does not know is
   taken: stock is where the edge says);
3. a carton: a GS1 code (GTIN (01), lot (10), expiry (17), count (30/37)) or an item
   barcode. It must be an item of the pick list with something left to pick (counted per
   reserved lot, on the list's current version). Its lot must be one reserved for the
   line, **or another that expires no later** than each reserved lot it replaces (FEFO):
   it is swapped in for the lots still open, latest-expiring first. The swap travels with
   the event (``ref`` ends in ``swap <reserved lot>``) so central moves the reservation
   from that lot to the picked one. A lot that expires later is refused (or,
   by site policy ``later_expiry = "warn"``, taken with a warning on the display line);
   an expired lot, or one too short-dated for the customer, is always refused. A carton
   with no lot on it (a plain item barcode) is taken only for a line whose reservation
   has no lot; otherwise the display asks for the carton's GS1 label.
4. ``PACK`` packs what this scanner picked and did not pack yet: one logistic unit per
   (item, lot, trade item), each in one SQLite transaction that takes the next SSCC serial of the
   site, books the unit's ``issue`` events (one per SO line, location and swap, with
   ``ref = "sscc <SSCC>"``) and owes its GS1 logistic label (:mod:`.sscc`);
5. ``DONE`` ends the list: every line picked short is reported on the display line and in
   :attr:`PickingStation.shorts` (the status page); central keeps the rest reserved.

A pick is recorded at once (``picks``, in the ledger file), so a restart of the agent
loses no scan; it becomes a ledger event when packed, since that is when stock leaves on
a unit with a name (its SSCC) central can ship. Until then nothing has left the site.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from device_drivers.scanners import Scan
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations import sscc as units
from edge_agent.stations.errors import StationError
from edge_agent.stations.scan_station import UNSELLABLE_KINDS, LaterExpiry, Place, ScanStation
from edge_agent.stations.sscc import Fault, Pack, SsccConfig, content_gtin
from jxc.contract import EventKind, LedgerEvent
from jxc.feed import PickLineData, PickListData, PickLotData
from jxc.ids import uuid7

log = logging.getLogger("edge_agent.picking")

PACK, DONE = "PACK", "DONE"
NO_LOT = ""
"""A reservation of stock kept without a lot (central's own spelling)."""


class PickRefusedError(StationError):
    """The scan cannot be picked (wrong item, lot, expiry, location, nothing selected)."""


@dataclass(frozen=True, slots=True)
class Picked:
    """One accepted carton, recorded until it is packed."""

    pick_id: int
    so_version: int
    """The version of the order (its pick list) the pick was made on."""
    so_line: int
    item: str
    lot: str
    expiry: date | None
    location: str
    qty: Decimal
    uom: str
    count: int
    gtin: str | None
    swapped_from: str | None
    device_id: str | None


@dataclass(frozen=True, slots=True)
class Short:
    so_id: str
    so_line: int
    item: str
    wanted: Decimal
    picked: Decimal
    uom: str


@dataclass(slots=True)
class PickingStation(ScanStation):
    """Picks and packs the site's released pick lists; one per site, shared by its scanners."""

    sscc: SsccConfig
    label_printer: str | None = None
    later_expiry: LaterExpiry = "refuse"
    swaps: int = 0
    shorts: list[Short] = field(default_factory=list)
    fault: Fault = units._no_fault
    """Tests only: called at each step of a pack's transaction (see :mod:`.sscc`)."""

    refusal = PickRefusedError
    logger = log
    refused_event = "pick refused"
    select_first = "scan a pick list (its order number) first"
    selected_key = "pick_list"

    @property
    def so_id(self) -> str | None:
        """The selected pick list (its order's id)."""
        return self.selected

    # --- scans -----------------------------------------------------------------------------

    def take(self, scan: Scan, data: str, today: date) -> object:
        """``PACK``, ``DONE``, a pick list, a location, else a carton to pick."""
        if data.upper() == PACK:
            return self.pack(scan.device_id)
        if data.upper() == DONE:
            return self.done(scan.device_id)
        if scan.gs1 is None and (listed := self.catalog.pick_list(data)) is not None:
            return self._select(listed)
        if (place := self.place_of(scan, data)) is not None:
            return self.at(place)
        return self.pick(scan, today)

    def _select(self, listed: PickListData) -> PickListData:
        self.select(listed.so_id)
        left = sum(1 for line in listed.lines if self._left(listed, line) > 0)
        self.display = (
            f"{listed.so_id} for {listed.customer}: {left} line(s) to pick; scan a location"
        )
        return listed

    def check_place(self, place: Place) -> None:
        self.bar_place(place, UNSELLABLE_KINDS, "picked from")

    def pick(self, scan: Scan, today: date) -> list[Picked]:
        """Take one carton for the selected pick list (see the module's rules): one pick row
        per reserved lot it counts against (itself, or the lots it is swapped in for)."""
        listed = self.still_open(
            self.catalog.pick_list, "was cancelled or closed; pick nothing more"
        )
        if self.location is None:
            raise PickRefusedError("REFUSED: scan the location you take the carton from first")
        carton, known = self.active_item(scan, unknown="is no active item of this site")
        count = carton.count
        qty = Decimal(count) * known.qty_per
        lot = carton.lot or NO_LOT
        open_now = self._open(listed)
        lines = [
            line
            for line in listed.lines
            if line.item_code == known.item_code and sum(open_now[line.so_line].values()) > 0
        ]
        if not lines:
            raise PickRefusedError(
                f"REFUSED: {known.item_code} has nothing left to pick on {listed.so_id}"
            )
        # A line that reserved this very lot first; else the first line of the item.
        line = next((ln for ln in lines if any(h.lot == lot for h in ln.lots)), lines[0])
        left = sum(open_now[line.so_line].values(), Decimal(0))
        if qty > left:
            raise PickRefusedError(
                f"REFUSED: {qty} {line.uom} of {line.item_code} is more than line {line.so_line}"
                f" still needs ({left} {line.uom}); take a smaller carton"
            )
        takes, expiry, warning = self._allocate(
            listed,
            line,
            open_now[line.so_line],
            lot=lot,
            expiry=carton.expiry,
            qty=qty,
            today=today,
        )
        picked = self._record(
            listed=listed, line=line, lot=lot, expiry=expiry, count=count,
            code=carton.code, takes=takes, scan=scan,
        )  # fmt: skip
        what = f"{qty} {line.uom} {line.item_code} lot {lot or '-'}"
        picked_now = sum((row.qty for row in picked), Decimal(0))
        progress = f"line {line.so_line}: {self._wanted(line) - left + picked_now}"
        progress += f"/{self._wanted(line)}"
        swapped = [lot_ for _qty, lot_ in takes if lot_ is not None]
        if swapped:
            self.swaps += 1
            swap = f"{what} for reserved lot {', '.join(swapped)}"
            self.display = f"{warning or 'SWAP'} {swap} ({progress})"
        else:
            self.display = f"OK {what} ({progress})"
        return picked

    def _allocate(
        self,
        listed: PickListData,
        line: PickLineData,
        left: dict[str, Decimal],
        *,
        lot: str,
        expiry: date | None,
        qty: Decimal,
        today: date,
    ) -> tuple[list[tuple[Decimal, str | None]], date | None, str | None]:
        """Which reserved lots the carton's ``qty`` counts against: ``(qty, None)`` for its
        own reservation, ``(qty, replaced_lot)`` for a swap; its expiry; a warning to show.
        :class:`PickRefusedError` with the reason when it may not be taken."""
        own = next((held for held in line.lots if held.lot == lot), None)
        if own is not None and expiry is None:
            expiry = own.expiry
        if expiry is not None and expiry <= today:
            raise PickRefusedError(
                f"REFUSED lot {lot or '-'}: EXPIRED (expires {expiry}); take another lot"
                + (" and tell the office: it is reserved" if own is not None else "")
            )
        takes: list[tuple[Decimal, str | None]] = []
        if own is not None and left[lot] > 0:
            mine = min(qty, left[lot])
            takes.append((mine, None))
            qty -= mine
        if qty <= 0:
            return takes, expiry, None
        reserved = [held for held in line.lots if held.lot not in (NO_LOT, lot)]
        if lot == NO_LOT:
            raise PickRefusedError(
                f"REFUSED: this code names no lot; line {line.so_line} reserved lot"
                f" {reserved[0].lot if reserved else '-'}: scan the carton's GS1 label"
                " (lot and expiry)"
            )
        if not reserved:
            raise PickRefusedError(
                f"REFUSED lot {lot}: line {line.so_line} reserved {line.item_code} without a lot"
            )
        if expiry is None:
            raise PickRefusedError(
                f"REFUSED lot {lot}: no expiry on the label, so FEFO cannot be checked;"
                f" take reserved lot {reserved[0].lot}"
            )
        if own is None:
            min_days = max(listed.min_remaining_days or 0, self._item_days(line.item_code), 1)
            if expiry < today + timedelta(days=min_days):
                raise PickRefusedError(
                    f"REFUSED lot {lot}: too short-dated for the customer (expires {expiry},"
                    f" needs {min_days} day(s) left)"
                )
        swaps, warning = self._swap(reserved, left, lot=lot, expiry=expiry, qty=qty)
        return takes + swaps, expiry, warning

    def _swap(
        self,
        reserved: list[PickLotData],
        left: dict[str, Decimal],
        *,
        lot: str,
        expiry: date,
        qty: Decimal,
    ) -> tuple[list[tuple[Decimal, str | None]], str | None]:
        """``qty`` of ``lot`` swapped in for the reserved lots still to pick, the
        latest-expiring first: FEFO allows replacing a lot that expires no earlier than
        the one taken. A later-expiring one is refused, or a warning by site policy."""
        open_lots = sorted(
            (held for held in reserved if left[held.lot] > 0),
            key=lambda held: held.expiry or date.max,
            reverse=True,
        )
        takes: list[tuple[Decimal, str | None]] = []
        warning = None
        for held in open_lots:
            if qty <= 0:
                break
            if held.expiry is not None and expiry > held.expiry:
                reason = (
                    f"lot {lot} expires {expiry}, after reserved lot {held.lot}"
                    f" ({held.expiry}): first expiry first"
                )
                if self.later_expiry == "refuse":
                    first = min(open_lots, key=lambda each: each.expiry or date.max)
                    raise PickRefusedError(f"REFUSED {reason}; take lot {first.lot}")
                warning = f"WARNING {reason};"
            take = min(qty, left[held.lot])
            takes.append((take, held.lot))
            qty -= take
        return takes, warning

    def _item_days(self, item_code: str) -> int:
        item = self.catalog.item(item_code)
        return (item.min_remaining_days or 0) if item else 0

    def _record(
        self,
        *,
        listed: PickListData,
        line: PickLineData,
        lot: str,
        expiry: date | None,
        count: int,
        code: str,
        takes: list[tuple[Decimal, str | None]],
        scan: Scan,
    ) -> list[Picked]:
        """One row per reserved lot the carton counts against; the carton's trade-item
        count goes with its first row (the label's (37) counts cartons, not rows)."""
        assert self.location is not None
        gtin = content_gtin(code)
        made = []
        with self.ledger.transaction() as conn:
            for index, (qty, swapped_from) in enumerate(takes):
                cursor = conn.execute(
                    "INSERT INTO picks (so_id, so_version, so_line, item, lot, expiry, location,"
                    " qty, uom, count, gtin, swapped_from, device_id, picked_at) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        listed.so_id,
                        listed.so_version,
                        line.so_line,
                        line.item_code,
                        lot,
                        expiry.isoformat() if expiry else None,
                        self.location,
                        format(qty, "f"),
                        line.uom,
                        count if index == 0 else 0,
                        gtin,
                        swapped_from,
                        scan.device_id,
                        scan.received_at.isoformat(),
                    ),
                )
                made.append(
                    Picked(
                        pick_id=int(cursor.lastrowid or 0),
                        so_version=listed.so_version,
                        so_line=line.so_line,
                        item=line.item_code,
                        lot=lot,
                        expiry=expiry,
                        location=self.location,
                        qty=qty,
                        uom=line.uom,
                        count=count if index == 0 else 0,
                        gtin=gtin,
                        swapped_from=swapped_from,
                        device_id=scan.device_id,
                    )
                )
        return made

    # --- what is picked ---------------------------------------------------------------------

    def picked(
        self, so_id: str, *, unpacked_only: bool = False, device_id: str | None = None
    ) -> list[Picked]:
        """The picks of ``so_id`` (not yet packed; made by scanner ``device_id``)."""
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT pick_id, so_version, so_line, item, lot, expiry, location, qty, uom,"
                " count, gtin, swapped_from, device_id FROM picks WHERE so_id = ?"
                " AND (? = 0 OR pack_serial IS NULL) AND (? IS NULL OR device_id IS ?)"
                " ORDER BY pick_id",
                (so_id, int(unpacked_only), device_id, device_id),
            ).fetchall()
        return [
            Picked(
                pick_id=int(r[0]),
                so_version=int(r[1]),
                so_line=int(r[2]),
                item=r[3],
                lot=r[4],
                expiry=date.fromisoformat(r[5]) if r[5] else None,
                location=r[6],
                qty=Decimal(r[7]),
                uom=r[8],
                count=int(r[9]),
                gtin=r[10],
                swapped_from=r[11],
                device_id=r[12],
            )
            for r in rows
        ]

    def _open(self, listed: PickListData) -> dict[int, dict[str, Decimal]]:
        """Per line and reserved lot, what is still to pick: the list's reservation less
        this edge's picks of that lot, or swapped in for it, *made on this version of the
        list*. A new version (a command on the order at central) already has the picks
        central had then booked taken off its reservations, so older picks are not
        subtracted again. One read of the version's picks."""
        left = {line.so_line: {held.lot: held.qty for held in line.lots} for line in listed.lines}
        with self.ledger.reading() as conn:
            rows = conn.execute(
                "SELECT so_line, COALESCE(swapped_from, lot), qty FROM picks"
                " WHERE so_id = ? AND so_version = ?",
                (listed.so_id, listed.so_version),
            ).fetchall()
        for so_line, lot, qty in rows:
            lots = left.get(int(so_line))
            if lots is not None and lot in lots:
                lots[lot] -= Decimal(qty)  # exact: never summed as SQLite floats
        return {
            so_line: {lot: max(qty, Decimal(0)) for lot, qty in lots.items()}
            for so_line, lots in left.items()
        }

    def _lots_left(self, listed: PickListData, line: PickLineData) -> dict[str, Decimal]:
        return self._open(listed)[line.so_line]

    def _left(self, listed: PickListData, line: PickLineData) -> Decimal:
        """What the line still has reserved and not picked here."""
        return sum(self._lots_left(listed, line).values(), Decimal(0))

    @staticmethod
    def _wanted(line: PickLineData) -> Decimal:
        """What this version of the list has the line pick: its reservations."""
        return sum((held.qty for held in line.lots), Decimal(0))

    # --- packing ----------------------------------------------------------------------------

    def pack(self, device_id: str | None = None) -> list[Pack]:
        """Pack the selected list's unpacked picks: one unit (SSCC) per item, lot and GTIN."""
        so_id = self.chosen()
        groups: dict[tuple[str, str, str | None], list[Picked]] = defaultdict(list)
        for picked in self.picked(so_id, unpacked_only=True, device_id=device_id):
            groups[(picked.item, picked.lot, picked.gtin)].append(picked)
        if not groups:
            raise PickRefusedError(f"REFUSED: nothing picked on {so_id} is waiting to be packed")
        made = [self._pack_one(so_id, picks) for picks in groups.values()]
        self.display = f"PACKED {len(made)} unit(s): " + ", ".join(
            f"{unit.sscc} {unit.qty} {unit.uom} {unit.item}" for unit in made
        )
        return made

    def _pack_one(self, so_id: str, picks: list[Picked]) -> Pack:
        """One logistic unit, all or nothing: serial, events, pack row, picks marked."""
        self.ledger.check_free_disk()
        first = picks[0]
        booked: dict[tuple[int, str, str | None], Decimal] = defaultdict(Decimal)
        for picked in picks:
            booked[(picked.so_line, picked.location, picked.swapped_from)] += picked.qty
        with self.ledger.transaction() as conn:
            serial = units.allocate_serial(conn, self.sscc)
            code = self.sscc.code(serial)
            self.fault("allocated")
            events = [
                self._book(
                    conn,
                    so_id=so_id,
                    first=first,
                    code=code,
                    so_line=so_line,
                    location=location,
                    swapped_from=swapped_from,
                    qty=qty,
                )
                for (so_line, location, swapped_from), qty in booked.items()
            ]
            self.fault("booked")
            unit = Pack(
                serial=serial,
                sscc=code,
                so_id=so_id,
                item=first.item,
                gtin=first.gtin,
                lot=first.lot or None,
                expiry=first.expiry,
                count=sum(p.count for p in picks),
                qty=sum((p.qty for p in picks), Decimal(0)),
                uom=first.uom,
                first_seq=events[0].seq,
                printer_id=self.label_printer,
                label_state="pending" if self.label_printer else "none",
            )
            units.record_pack(conn, unit)
            _mark_packed(conn, serial, [p.pick_id for p in picks])
            self.fault("recorded")
        if self.label_printer is not None:
            self.ledger.notify_labels()
        log.info(
            "packed",
            extra={"so_id": so_id, "sscc": code, "item": unit.item, "qty": str(unit.qty)},
        )
        return unit

    def _book(
        self,
        conn: sqlite3.Connection,
        *,
        so_id: str,
        first: Picked,
        code: str,
        so_line: int,
        location: str,
        swapped_from: str | None,
        qty: Decimal,
    ) -> LedgerEvent:
        ref = f"sscc {code}" + (f" swap {swapped_from}" if swapped_from is not None else "")
        return self.ledger.append_in(
            conn,
            EventDraft(
                kind=EventKind.ISSUE,
                item=first.item,
                lot=first.lot or None,
                expiry=first.expiry,
                location=location,
                qty=-qty,
                uom=first.uom,
                ref=ref,
                device_id=first.device_id,
                doc_type="sales_order",
                doc_id=so_id,
                doc_line=so_line,
            ),
        )

    # --- ending a list ----------------------------------------------------------------------

    def done(self, device_id: str | None = None) -> list[Short]:
        """End the selected list: report every line picked short (nothing is booked)."""
        so_id = self.chosen()
        listed = self.catalog.pick_list(so_id)
        unpacked = self.picked(so_id, unpacked_only=True, device_id=device_id)
        if unpacked:
            raise PickRefusedError(
                f"REFUSED: {len(unpacked)} pick(s) of {so_id} are not packed: scan PACK first"
            )
        shorts = []
        for line in [] if listed is None else listed.lines:
            assert listed is not None
            left = self._left(listed, line)
            if left > 0:
                wanted = self._wanted(line)
                shorts.append(
                    Short(
                        so_id=so_id,
                        so_line=line.so_line,
                        item=line.item_code,
                        wanted=wanted,
                        picked=wanted - left,
                        uom=line.uom,
                    )
                )
        self.shorts = [s for s in self.shorts if s.so_id != so_id] + shorts
        if shorts:
            record_shorts(self.ledger, shorts, device_id)
            self.display = f"DONE {so_id} SHORT: " + "; ".join(
                f"line {s.so_line} {s.item} {s.picked}/{s.wanted} {s.uom}" for s in shorts
            )
            log.warning(
                "pick list ended short",
                extra={"so_id": so_id, "short_lines": [s.so_line for s in shorts]},
            )
        else:
            self.display = f"DONE {so_id}: every line picked"
        self.selected, self.location = None, None
        return shorts

    def figures(self) -> dict[str, object]:
        """Picking's own entries of the status page: swaps, the SSCC counter, shorts."""
        return {
            "swaps": self.swaps,
            "last_sscc_serial": units.last_serial(self.ledger),
            "shorts": [
                {
                    "so_id": s.so_id,
                    "so_line": s.so_line,
                    "item": s.item,
                    "wanted": str(s.wanted),
                    "picked": str(s.picked),
                    "uom": s.uom,
                }
                for s in self.shorts
            ],
        }


def record_shorts(ledger: Ledger, shorts: list[Short], device_id: str | None) -> None:
    """Keep the shorts for central (``pick_shorts``, sent by the pusher): written at once,
    in one transaction, so a restart before the next push loses none."""
    now = datetime.now(UTC).isoformat()
    with ledger.transaction() as conn:
        conn.executemany(
            "INSERT INTO pick_shorts (short_id, so_id, so_line, item, wanted, picked, uom,"
            " device_id, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    str(uuid7()),
                    s.so_id,
                    s.so_line,
                    s.item,
                    format(s.wanted, "f"),
                    format(s.picked, "f"),
                    s.uom,
                    device_id,
                    now,
                )
                for s in shorts
            ],
        )


def _mark_packed(conn: sqlite3.Connection, serial: int, pick_ids: list[int]) -> None:
    conn.executemany(
        "UPDATE picks SET pack_serial = ? WHERE pick_id = ?", [(serial, i) for i in pick_ids]
    )
