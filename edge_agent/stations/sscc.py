"""Logistic units packed at the edge: their SSCC-18, the site's gapless serial counter, and
the GS1 logistic label each one owes.

An SSCC (Serial Shipping Container Code, AI 00) is the extension digit, the GS1 company
prefix, a serial reference filling the 16 digits after the extension digit, and a mod-10
check digit (``device_drivers.printers.zpl.sscc``). The serial comes from one counter per
site in the ledger file (``sscc_counter``, ledger migration 10), taken in the same SQLite
transaction that books the pack's events and its ``packs`` row. So:

* **gapless**: a pack that does not commit (a crash, a full disk, a kill -9 at any instant)
  gives its number back with everything else it wrote, and the next pack takes it;
* **never reused**: a number is only ever seen outside the transaction (on a label, at
  central) once the pack holding it has committed, and a committed pack keeps it for good;
  the label is printed from the committed row, never before.

The label is owed in the ``packs`` row itself (``label_state``), printed by the printer's
spooler (:class:`edge_agent.stations.labels.LabelSpooler`) under the job id ``sscc-<SSCC>``
so the printer driver's journal prints it once, whatever happens to the agent.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from device_drivers.printers.base import LabelDataError
from device_drivers.printers.zpl import Gs1Code128, Label, Text, build_zpl, sscc
from edge_agent.ledger import Ledger

SERIAL_DIGITS = 16
"""Digits after the extension digit: company prefix and serial reference together."""

Fault = Callable[[str], None]
"""A test's hook, called at each step of a pack inside its transaction (``"allocated"``,
``"booked"``, ``"recorded"``): raising there is a crash at that instant."""


def _no_fault(_step: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class SsccConfig:
    """The site's GS1 identity for SSCCs (site file, ``[picking]``)."""

    extension_digit: int
    company_prefix: str

    def __post_init__(self) -> None:
        sscc(self.extension_digit, self.company_prefix, "0")  # LabelDataError if wrong

    @property
    def max_serial(self) -> int:
        """The last serial the prefix leaves room for (a 7-digit prefix: 10**9 - 1)."""
        return int(10 ** (SERIAL_DIGITS - len(self.company_prefix))) - 1

    def code(self, serial: int) -> str:
        return sscc(self.extension_digit, self.company_prefix, str(serial))


class SerialsExhaustedError(LabelDataError):
    """Every serial of the company prefix is used: the site needs another prefix."""


def allocate_serial(conn: sqlite3.Connection, config: SsccConfig) -> int:
    """The next serial of the site, taken inside the caller's transaction (``conn``)."""
    if not conn.in_transaction:
        raise RuntimeError("an SSCC serial is allocated only inside the pack's transaction")
    (last,) = conn.execute("SELECT last_serial FROM sscc_counter WHERE id = 1").fetchone()
    serial = int(last) + 1
    if serial > config.max_serial:
        raise SerialsExhaustedError(
            f"every SSCC serial of company prefix {config.company_prefix} is used "
            f"({config.max_serial}); set another prefix in [picking]"
        )
    conn.execute("UPDATE sscc_counter SET last_serial = ? WHERE id = 1", (serial,))
    return serial


def last_serial(ledger: Ledger) -> int:
    with ledger.reading() as conn:
        (last,) = conn.execute("SELECT last_serial FROM sscc_counter WHERE id = 1").fetchone()
    return int(last)


@dataclass(frozen=True, slots=True)
class Pack:
    """One packed logistic unit: one item, one lot, for one order."""

    serial: int
    sscc: str
    so_id: str
    item: str
    gtin: str | None
    lot: str | None
    expiry: date | None
    count: int
    """Trade items of ``gtin`` in the unit (AI 37)."""
    qty: Decimal
    uom: str
    first_seq: int
    printer_id: str | None
    label_state: str
    attempts: int = 0

    @property
    def job_id(self) -> str:
        return f"sscc-{self.sscc}"


_PACK_COLUMNS = (
    "serial, sscc, so_id, item, gtin, lot, expiry, count, qty, uom, first_seq, printer_id,"
    " label_state, attempts"
)


def _pack(row: tuple[object, ...]) -> Pack:
    return Pack(
        serial=int(row[0]),  # type: ignore[call-overload]
        sscc=str(row[1]),
        so_id=str(row[2]),
        item=str(row[3]),
        gtin=None if row[4] is None else str(row[4]),
        lot=None if row[5] is None else str(row[5]),
        expiry=None if row[6] is None else date.fromisoformat(str(row[6])),
        count=int(row[7]),  # type: ignore[call-overload]
        qty=Decimal(str(row[8])),
        uom=str(row[9]),
        first_seq=int(row[10]),  # type: ignore[call-overload]
        printer_id=None if row[11] is None else str(row[11]),
        label_state=str(row[12]),
        attempts=int(row[13]),  # type: ignore[call-overload]
    )


def record_pack(conn: sqlite3.Connection, pack: Pack) -> None:
    """Write the pack's row (its label owed if it has a printer), in the pack's transaction."""
    conn.execute(
        f"INSERT INTO packs ({_PACK_COLUMNS}, packed_at) VALUES"  # noqa: S608 (our columns)
        " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            pack.serial,
            pack.sscc,
            pack.so_id,
            pack.item,
            pack.gtin,
            pack.lot,
            pack.expiry.isoformat() if pack.expiry else None,
            pack.count,
            format(pack.qty, "f"),
            pack.uom,
            pack.first_seq,
            pack.printer_id,
            pack.label_state,
            pack.attempts,
            datetime.now(UTC).isoformat(),
        ),
    )


def packs(ledger: Ledger, so_id: str | None = None) -> list[Pack]:
    """Packed units (of ``so_id``), by serial."""
    with ledger.reading() as conn:
        rows = conn.execute(
            f"SELECT {_PACK_COLUMNS} FROM packs"  # noqa: S608 (our columns)
            " WHERE (? IS NULL OR so_id = ?) ORDER BY serial",
            (so_id, so_id),
        ).fetchall()
    return [_pack(row) for row in rows]


def owed_pack_labels(ledger: Ledger, printer_id: str, limit: int = 20) -> list[Pack]:
    """Logistic labels still owed on ``printer_id``, oldest first."""
    with ledger.reading() as conn:
        rows = conn.execute(
            f"SELECT {_PACK_COLUMNS} FROM packs"  # noqa: S608 (our columns)
            " WHERE printer_id = ? AND label_state = 'pending' ORDER BY serial LIMIT ?",
            (printer_id, limit),
        ).fetchall()
    return [_pack(row) for row in rows]


def settle_pack_label(ledger: Ledger, serial: int, state: str, detail: str | None = None) -> None:
    with ledger.transaction() as conn:
        conn.execute(
            "UPDATE packs SET label_state = ?, attempts = attempts + 1, detail = ?"
            " WHERE serial = ?",
            (state, detail, serial),
        )


def content_gtin(code: str | None) -> str | None:
    """A scanned trade item number as GTIN-14 for AI 02, or None if it is not a GTIN."""
    if code is None or not code.isdigit() or len(code) not in (8, 12, 13, 14):
        return None
    return code.zfill(14)


def logistic_label(pack: Pack, *, site_id: str) -> Label:
    """The GS1 logistic label of a unit (4 x 6 in at 203 dpi).

    The SSCC has a GS1-128 symbol of its own (AI 00), as GS1 logistic labels put it at the
    bottom; the content symbol carries (02) the content GTIN with (37) the count of those
    trade items (02 and 37 go together), (10) the batch and (15) the best-before date,
    which is the lot's expiry. Without a GTIN (an item barcode that is no GTIN) the unit's
    content is printed as text only.
    """
    content: list[tuple[str, str]] = []
    if pack.gtin is not None:
        content += [("02", pack.gtin), ("37", str(pack.count))]
    if pack.lot:
        content.append(("10", pack.lot))
    if pack.expiry is not None:
        content.append(("15", pack.expiry.strftime("%y%m%d")))
    fields: list[Text | Gs1Code128] = [
        Text(40, 30, f"SSCC {pack.sscc}", 40),
        Text(40, 85, f"{pack.so_id}  {site_id}", 36),
        Text(40, 135, f"{pack.item}  {pack.qty:f} {pack.uom}", 36),
        Text(40, 185, f"LOT {pack.lot or '-'}  BEST BEFORE {pack.expiry or '-'}", 30),
    ]
    if content:
        fields.append(Gs1Code128(40, 260, tuple(content), height=160))
    fields.append(Gs1Code128(40, 560, (("00", pack.sscc),), height=200))
    return Label(tuple(fields), width_dots=812, length_dots=1218)


def logistic_label_zpl(pack: Pack, *, site_id: str) -> bytes:
    return build_zpl(logistic_label(pack, site_id=site_id), job_id=pack.job_id)
