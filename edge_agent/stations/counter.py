"""The store's counter (零售): a basket scanned at the till becomes ``sale`` events at once,
offline or not; a refund by receipt number becomes ``return`` events.

The cashier drives it with a scanner, every scan answering on the display line:

1. an item barcode or a GS1 code (GTIN (01), lot (10), expiry (17), count (30/37)) adds a
   line to the basket: the barcode's pack quantity (times the GS1 count), or the quantity
   set just before by ``QTY <n>``; the price is the store's price of the item per base
   unit (:attr:`CounterStation.prices`, from the site file's ``[counter.prices]``; an item
   without one is refused: the counter never guesses a price); a GS1 lot that has expired
   is refused (never sold);
2. ``VOID`` takes the last line off, ``CLEAR`` empties the basket;
3. ``PAY <method>`` (cash, card, mobile, voucher) commits the sale: in **one** SQLite
   transaction the next receipt number of the site (a gapless counter in the ledger
   file, like the SSCC serials: a crash gives the number back with everything else), one
   ``sale`` event per line and lot, and the receipt's rows. The lot of a line is the one
   its GS1 code named; else, for stock the edge holds by lot at the counter's location,
   the first to expire that has not expired (FEFO), split over lots as needed. What no
   unexpired lot holds is sold without a lot when the item has no lot stock here at all;
   when it has, and all of it is expired or too little, the sale is refused with the
   reason (an expired lot is never sold);
4. ``REFUND <receipt number> [<line>]`` pays back everything of that receipt (or of that
   line of it) not refunded yet:
   ``return`` events of the same lots back to the same location, under a new receipt
   number (the refund slip), paid back by the sale's own method.

Every event names its receipt line (``doc_type = "retail_receipt"``) and carries its unit
price and payment method in ``ref`` (:mod:`jxc.retail`), so central books the revenue the
moment the events arrive, whenever that is. The day's totals per payment method are read
from the ledger file (:meth:`CounterStation.day_totals`), without central.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from device_drivers.scanners import Scan
from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.errors import StationError
from edge_agent.stations.scan_station import item_of, note_refusal
from jxc.contract import EventKind
from jxc.retail import PAYMENTS, RETAIL_RECEIPT, PosRef, line_amount, receipt_code

log = logging.getLogger("edge_agent.counter")

Fault = Callable[[str], None]
"""A test's hook, called inside a receipt's transaction (``"numbered"``, ``"booked"``):
raising there is a crash at that instant."""


_MICRO = Decimal("0.000001")


def _no_fault(_step: str) -> None:
    return None


class CounterRefusedError(StationError):
    """The scan or command cannot be taken (unknown item, no price, expired lot, ...)."""


def keyed_qty(text: str, refused: type[StationError]) -> Decimal:
    """The quantity keyed as ``QTY <n>`` (weighed goods, part of a carton): above 0, below a
    million, at most 6 places (what an event carries); else ``refused`` says why."""
    try:
        qty = Decimal(text)
    except InvalidOperation:
        raise refused(f"REFUSED: QTY {text!r} is no number") from None
    if not qty.is_finite() or not 0 < qty < 10**6 or qty != qty.quantize(_MICRO):
        raise refused(f"REFUSED: QTY {text} must be above 0, at most 6 places")
    return qty


@dataclass(frozen=True, slots=True)
class BasketLine:
    """One line of the basket, before the sale is committed."""

    item: str
    qty: Decimal
    uom: str
    unit_price: Decimal
    lot: str | None = None
    expiry: date | None = None

    @property
    def amount(self) -> Decimal:
        return line_amount(self.qty, self.unit_price)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A committed sale or refund."""

    number: int
    code: str
    kind: str
    """``sale`` or ``refund``."""
    payment: str
    total: Decimal
    """What the customer paid (a sale) or was paid back (a refund); positive."""
    first_seq: int
    events: int


@dataclass(frozen=True, slots=True)
class DayTotals:
    """What the till took on one day (UTC), per payment method, net of refunds."""

    day: date
    sales: int
    refunds: int
    by_payment: dict[str, Decimal]
    """Per method: sold less refunded."""

    @property
    def net(self) -> Decimal:
        return sum(self.by_payment.values(), Decimal(0))


@dataclass(slots=True)
class CounterStation:
    """One till: its basket, and the site's shared receipt counter in the ledger file."""

    ledger: Ledger
    catalog: Catalog
    location: str
    prices: Mapping[str, Decimal]
    """The store's price per base unit of each item it sells."""
    display: str = ""
    basket: list[BasketLine] = field(default_factory=list)
    next_qty: Decimal | None = None
    refused: int = 0
    fault: Fault = _no_fault
    _seen: dict[str, tuple[int, LotBalances]] = field(default_factory=dict)
    """What :class:`_LotStock` read of each item's lots, through which seq."""

    # --- scans -------------------------------------------------------------------------------

    def on_scan(self, scan: Scan, *, today: date | None = None) -> object:
        """Act on one scan; the display line says what happened. Raises
        :class:`CounterRefusedError` (nothing changed) when it cannot be taken."""
        today = today or scan.received_at.astimezone(UTC).date()
        data = scan.data.strip()
        word, _, rest = data.partition(" ")
        command = word.upper() if scan.gs1 is None else ""
        try:
            if command == "QTY":
                return self._set_qty(rest.strip())
            if command == "VOID":
                return self.void()
            if command == "CLEAR":
                self.basket.clear()
                self.next_qty = None
                self.display = "basket cleared"
                return None
            if command == "PAY":
                return self.pay(rest.strip().lower(), device_id=scan.device_id, today=today)
            if command == "REFUND":
                code, _, line = rest.strip().partition(" ")
                if line.strip() and not line.strip().isdigit():
                    raise CounterRefusedError(f"REFUSED: REFUND {code} {line}: a line number")
                only = int(line) if line.strip() else None
                return self.refund(code, line=only, device_id=scan.device_id)
            return self.add(scan, today=today)
        except CounterRefusedError as refused:
            note_refusal(self, refused, data, log, "counter refused")
            raise

    def _set_qty(self, text: str) -> Decimal:
        qty = keyed_qty(text, CounterRefusedError)
        self.next_qty = qty
        self.display = f"QTY {qty}: scan the item"
        return qty

    def add(self, scan: Scan, *, today: date) -> BasketLine:
        """Put the scanned item in the basket at the store's price."""
        carton, known = item_of(
            self.catalog, scan, CounterRefusedError, unknown="is no item sold here"
        )
        price = self.prices.get(known.item_code)
        if price is None:
            raise CounterRefusedError(
                f"REFUSED: {known.item_code} has no price at this store; ask the office"
            )
        qty = self.next_qty if self.next_qty is not None else Decimal(carton.count) * known.qty_per
        lot, expiry = carton.lot, carton.expiry
        if expiry is not None and expiry <= today:
            raise CounterRefusedError(
                f"REFUSED lot {lot or '-'} of {known.item_code}: EXPIRED (expires {expiry});"
                " take it off the shelf, it is not sold"
            )
        line = BasketLine(known.item_code, qty, known.uom, price, lot, expiry)
        self.basket.append(line)
        self.next_qty = None
        self.display = (
            f"{known.item_code} {qty} {known.uom} x {price} = {line.amount}; total {self.total()}"
        )
        return line

    def void(self) -> BasketLine:
        if not self.basket:
            raise CounterRefusedError("REFUSED: the basket is empty")
        line = self.basket.pop()
        self.display = f"VOID {line.item} {line.qty}; total {self.total()}"
        return line

    def total(self) -> Decimal:
        return sum((line.amount for line in self.basket), Decimal(0))

    # --- the sale ----------------------------------------------------------------------------

    def pay(self, payment: str, *, device_id: str | None = None, today: date) -> Receipt:
        """Commit the basket as a sale paid by ``payment``: all of it or nothing."""
        if payment not in PAYMENTS:
            raise CounterRefusedError(
                f"REFUSED: PAY with one of {', '.join(PAYMENTS)}, not {payment or 'nothing'}"
            )
        if not self.basket:
            raise CounterRefusedError("REFUSED: the basket is empty: scan an item first")
        self.ledger.check_free_disk()
        now = datetime.now(UTC)
        with self.ledger.transaction() as conn:
            number, code = self._take_number(conn)
            total = self.total()
            _receipt_row(
                conn, number=number, code=code, kind="sale", refunds=None, payment=payment,
                total=total, at=now, device_id=device_id,
            )  # fmt: skip
            self.fault("numbered")
            stock = _LotStock(conn, self.location, today, self._seen)
            first_seq = 0
            events = 0
            for line_no, line in enumerate(self.basket, start=1):
                ref = PosRef(payment, line.unit_price).text()
                for lot, expiry, qty in stock.take(line):
                    event = self.ledger.append_in(
                        conn,
                        EventDraft(
                            kind=EventKind.SALE,
                            item=line.item,
                            lot=lot,
                            expiry=expiry,
                            location=self.location,
                            qty=-qty,
                            uom=line.uom,
                            ref=ref,
                            device_id=device_id,
                            doc_type=RETAIL_RECEIPT,
                            doc_id=code,
                            doc_line=line_no,
                        ),
                        occurred_at=now,
                    )
                    first_seq = first_seq or event.seq
                    events += 1
                    _line_row(
                        conn, seq=event.seq, number=number, line_no=line_no, line=line,
                        lot=lot, expiry=expiry, qty=qty,
                    )  # fmt: skip
            self.fault("booked")
        receipt = Receipt(number, code, "sale", payment, total, first_seq, events)
        self.basket.clear()
        self.display = f"PAID {code} {payment} {total}"
        log.info("sale", extra={"receipt": code, "payment": payment, "lines": events})
        return receipt

    def _take_number(self, conn: sqlite3.Connection) -> tuple[int, str]:
        (last,) = conn.execute("SELECT last_number FROM receipt_counter WHERE id = 1").fetchone()
        number = int(last) + 1
        conn.execute("UPDATE receipt_counter SET last_number = ? WHERE id = 1", (number,))
        return number, receipt_code(self.ledger.site_id, number)

    # --- the refund --------------------------------------------------------------------------

    def refund(
        self, code: str, *, line: int | None = None, device_id: str | None = None
    ) -> Receipt:
        """Pay back what is left of receipt ``code`` (or of its ``line`` only): ``return``
        events of the very lots sold, to the location they left, at the price paid, under a
        refund slip's own number."""
        self.ledger.check_free_disk()
        now = datetime.now(UTC)
        with self.ledger.transaction() as conn:
            found = conn.execute(
                "SELECT number, kind, payment FROM receipts WHERE code = ?", (code,)
            ).fetchone()
            if found is None or found[1] != "sale":
                raise CounterRefusedError(
                    f"REFUSED: {code or '-'} is no sale receipt of this store"
                )
            sold_number, _kind, payment = found
            rows = conn.execute(
                "SELECT seq, line, item, lot, expiry, location, qty, uom, unit_price, refunded"
                " FROM receipt_lines WHERE number = ? AND (? IS NULL OR line = ?) ORDER BY seq",
                (sold_number, line, line),
            ).fetchall()
            if not rows:
                raise CounterRefusedError(f"REFUSED: {code} has no line {line}")
            left = [
                (row, Decimal(row[6]) - Decimal(row[9]))
                for row in rows
                if Decimal(row[6]) > Decimal(row[9])
            ]
            if not left:
                what = code if line is None else f"line {line} of {code}"
                raise CounterRefusedError(f"REFUSED: {what} is refunded in full already")
            number, slip = self._take_number(conn)
            total = sum((line_amount(qty, Decimal(row[8])) for row, qty in left), Decimal(0))
            _receipt_row(
                conn, number=number, code=slip, kind="refund", refunds=sold_number,
                payment=payment, total=total, at=now, device_id=device_id,
            )  # fmt: skip
            self.fault("numbered")
            first_seq = 0
            for row, qty in left:
                seq, line_no, item, lot, expiry_text, location, _q, uom, price_text, _r = row
                price = Decimal(price_text)
                expiry = date.fromisoformat(expiry_text) if expiry_text else None
                event = self.ledger.append_in(
                    conn,
                    EventDraft(
                        kind=EventKind.RETURN,
                        item=item,
                        lot=lot,
                        expiry=expiry,
                        location=location,
                        qty=qty,
                        uom=uom,
                        ref=PosRef(payment, price, slip).text(),
                        device_id=device_id,
                        doc_type=RETAIL_RECEIPT,
                        doc_id=code,
                        doc_line=int(line_no),
                    ),
                    occurred_at=now,
                )
                first_seq = first_seq or event.seq
                amount = line_amount(qty, price)
                conn.execute(
                    "INSERT INTO receipt_lines (seq, number, line, item, lot, expiry, location,"
                    " qty, uom, unit_price, amount, refund_of) VALUES"
                    " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.seq, number, line_no, item, lot, expiry_text, location,
                        format(qty, "f"), uom, price_text, format(amount, "f"), seq,
                    ),
                )  # fmt: skip
                conn.execute("UPDATE receipt_lines SET refunded = qty WHERE seq = ?", (seq,))
            self.fault("booked")
        self.display = f"REFUND {slip} of {code}: {payment} {total} paid back"
        log.info("refund", extra={"receipt": slip, "of": code, "payment": payment})
        return Receipt(number, slip, "refund", payment, total, first_seq, len(left))

    # --- what the till took ------------------------------------------------------------------

    def day_totals(self, day: date) -> DayTotals:
        """The day's takings per payment method, net of refunds, from the ledger file alone."""
        return day_totals(self.ledger, day)

    def report(self) -> dict[str, object]:
        """What the status page shows of the counter."""
        today = day_totals(self.ledger, datetime.now(UTC).date())
        return {
            "display": self.display,
            "basket_lines": len(self.basket),
            "basket_total": str(self.total()),
            "refused": self.refused,
            "last_receipt": last_number(self.ledger),
            "today": {
                "sales": today.sales,
                "refunds": today.refunds,
                "by_payment": {k: str(v) for k, v in today.by_payment.items()},
                "net": str(today.net),
            },
        }


LotBalances = dict[str, tuple[date | None, Decimal]]
"""Per lot: its expiry and what the ledger holds of it (zero and negative included)."""


class _LotStock:
    """The counter location's stock of each item by lot, as this edge's ledger holds it,
    less what this sale has taken so far; read once per item within the sale's transaction.

    The station keeps what it read per item (``seen``: balances through the item's last
    seq read), so a sale reads only the item's events since: a store with years of sales
    pays for its new events, not its history. Only committed events are ever kept: an
    item is read before this sale books any event of it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        location: str,
        today: date,
        seen: dict[str, tuple[int, LotBalances]],
    ) -> None:
        self.conn = conn
        self.location = location
        self.today = today
        self.seen = seen
        self._lots: dict[str, LotBalances] = {}

    def _of(self, item: str) -> LotBalances:
        known = self._lots.get(item)
        if known is None:
            through, before = self.seen.get(item, (0, {}))
            balances = dict(before)
            # One row per lot; its quantities summed here, exactly (SQLite would sum the
            # texts as floats). The expiry is the one the lot's events name.
            for lot, quantities, expiry, last in self.conn.execute(
                "SELECT lot, group_concat(qty, ' '), MAX(json_extract(body, '$.expiry')),"
                " MAX(seq) FROM events WHERE item = ? AND location = ? AND lot IS NOT NULL"
                " AND seq > ? GROUP BY lot",
                (item, self.location, through),
            ):
                was, held = balances.get(lot, (None, Decimal(0)))
                held += sum(map(Decimal, quantities.split(" ")), Decimal(0))
                balances[lot] = (date.fromisoformat(expiry) if expiry else was, held)
                through = max(through, int(last))
            self.seen[item] = (through, dict(balances))
            known = {lot: each for lot, each in balances.items() if each[1] > 0}
            self._lots[item] = known
        return known

    def take(self, line: BasketLine) -> list[tuple[str | None, date | None, Decimal]]:
        """Which lots ``line`` is sold from: (lot, expiry, qty) each; FEFO (see the module)."""
        lots = self._of(line.item)
        if line.lot is not None:
            expiry, held = lots.get(line.lot, (line.expiry, Decimal(0)))
            lots[line.lot] = (expiry, held - line.qty)
            return [(line.lot, line.expiry or expiry, line.qty)]
        if not lots:
            return [(None, None, line.qty)]
        fresh = sorted(
            (
                (expiry, lot, held)
                for lot, (expiry, held) in lots.items()
                if held > 0 and (expiry is None or expiry > self.today)
            ),
            key=lambda each: (each[0] or date.max, each[1]),
        )
        taken: list[tuple[str | None, date | None, Decimal]] = []
        wanted = line.qty
        for expiry, lot, held in fresh:
            if wanted <= 0:
                break
            qty = min(held, wanted)
            taken.append((lot, expiry, qty))
            lots[lot] = (expiry, held - qty)
            wanted -= qty
        if wanted > 0:
            expired = sum(
                (held for expiry, held in lots.values() if expiry and expiry <= self.today),
                Decimal(0),
            )
            raise CounterRefusedError(
                f"REFUSED: {line.item} has {line.qty - wanted} {line.uom} in unexpired lots at"
                f" {self.location}, not {line.qty}"
                + (f" ({expired} {line.uom} EXPIRED: not sold)" if expired else "")
                + "; scan the carton's GS1 label or take the item off the basket (VOID)"
            )
        return taken


def _line_row(
    conn: sqlite3.Connection,
    *,
    seq: int,
    number: int,
    line_no: int,
    line: BasketLine,
    lot: str | None,
    expiry: date | None,
    qty: Decimal,
) -> None:
    conn.execute(
        "INSERT INTO receipt_lines (seq, number, line, item, lot, expiry, location, qty, uom,"
        " unit_price, amount) VALUES (?, ?, ?, ?, ?, ?, (SELECT location FROM events WHERE"
        " seq = ?), ?, ?, ?, ?)",
        (
            seq, number, line_no, line.item, lot, expiry.isoformat() if expiry else None, seq,
            format(qty, "f"), line.uom, format(line.unit_price, "f"),
            format(line_amount(qty, line.unit_price), "f"),
        ),
    )  # fmt: skip


def _receipt_row(
    conn: sqlite3.Connection,
    *,
    number: int,
    code: str,
    kind: str,
    refunds: int | None,
    payment: str,
    total: Decimal,
    at: datetime,
    device_id: str | None,
) -> None:
    conn.execute(
        "INSERT INTO receipts (number, code, kind, refunds, payment, total, made_at, day,"
        " device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            number, code, kind, refunds, payment, format(total, "f"), at.isoformat(),
            at.date().isoformat(), device_id,
        ),
    )  # fmt: skip


def last_number(ledger: Ledger) -> int:
    """The last receipt number the site handed out (0: none yet)."""
    with ledger.reading() as conn:
        (last,) = conn.execute("SELECT last_number FROM receipt_counter WHERE id = 1").fetchone()
    return int(last)


def receipts(ledger: Ledger) -> list[Receipt]:
    """Every receipt, in number order (for tests and the status page; not hot)."""
    with ledger.reading() as conn:
        rows = conn.execute(
            "SELECT r.number, r.code, r.kind, r.payment, r.total, MIN(l.seq), COUNT(l.seq)"
            " FROM receipts r LEFT JOIN receipt_lines l ON l.number = r.number"
            " GROUP BY r.number ORDER BY r.number"
        ).fetchall()
    return [
        Receipt(int(n), code, kind, pay, Decimal(total), int(first or 0), int(count))
        for n, code, kind, pay, total, first, count in rows
    ]


def day_totals(ledger: Ledger, day: date) -> DayTotals:
    """The takings of ``day`` (UTC) per payment method, sales less refunds."""
    with ledger.reading() as conn:
        rows = conn.execute(
            "SELECT kind, payment, total FROM receipts WHERE day = ?", (day.isoformat(),)
        ).fetchall()
    by_payment: dict[str, Decimal] = defaultdict(Decimal)
    sales = refunds = 0
    for kind, payment, total in rows:
        if kind == "sale":
            sales += 1
            by_payment[payment] += Decimal(total)
        else:
            refunds += 1
            by_payment[payment] -= Decimal(total)
    return DayTotals(day, sales, refunds, dict(sorted(by_payment.items())))
