"""Imports and exports of master data as CSV or XLSX: items with their units and barcodes,
partners, and locations.

A file is refused whole when any row is bad: every row is checked first, and every error
is reported as (row, column, reason), the header being row 1, so that a person can fix
the whole sheet in one go. Only a file without errors is written, in one transaction, so
an import never leaves half a file behind. Rows equal to what central holds are skipped,
so importing the same file twice changes nothing (no write, no feed change) the second
time. An export writes the same columns, so an exported file imports back unchanged.

Cells that hold lists
---------------------
``units``: ``盒=10; 箱=12 盒`` (a unit, ``=``, the factor, and optionally the unit it is a
multiple of; default the base unit). ``barcodes``: ``06901234567892; 16901234567899@盒``
(a code, optionally ``@`` its pack unit, optionally ``!internal`` for an all-digit code of
your own). A barcode that contains ``;``, ``@`` or ``!`` cannot be imported this way.

Rows are checked by the very models that check the API's bodies (``ItemIn``,
``PartnerCreate``, ``LocationCreate``), handed in by the caller as :class:`RowModels`: a
service knows no HTTP model, and a second copy of the rules would drift.

Items are written set-wise (the file's items, units and barcodes are read in a few
statements, compared in Python, and written with executemany) since an import of 10,000
items one request at a time would take minutes; partners and locations are written row
by row in the same single transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection, insert, select, update

from central_api.core.db import write_transaction
from central_api.errors import InvalidError
from central_api.models.items import item_barcodes, items
from central_api.models.master import categories, item_units, locations, partners, sites
from central_api.models.master import reference_entries as reference
from central_api.models.stock import NO_LOT, opening_stock
from central_api.services import central_events
from central_api.services import items as item_service
from central_api.services import partners as partner_service
from central_api.services import sites as site_service
from central_api.services.audit import AuditContext, record
from central_api.services.feed import FeedWriter, feed_writer, read_snapshot
from central_api.services.master_text import clean_line
from central_api.services.projections import Projections
from jxc.contract import EventKind
from jxc.feed import ChangeOp, FeedEntity, ItemData, LocationData

KINDS = ("items", "partners", "locations", "opening_stock")
EXPORT_KINDS = ("items", "partners", "locations")
"""Opening stock is imported, never exported: after the import it is the ledger's."""
IMPORT_ACTION = {
    "items": "items.import",
    "partners": "partners.import",
    "locations": "locations.import",
    "opening_stock": "stock.import",
}
"""The action each kind's import needs (the API's, the console's and nothing else)."""
FORMATS = ("csv", "xlsx")
MAX_ROWS = 100_000
MAX_ERRORS = 1000
"""Errors listed at most; a sheet with more is wrong throughout, and the first thousand
say how."""
_CHUNK = 500

ITEM_COLUMNS = (
    "item_code",
    "name",
    "name_en",
    "uom",
    "category",
    "active",
    "lot_tracked",
    "expiry_tracked",
    "serial_tracked",
    "shelf_life_days",
    "min_remaining_days",
    "unit_weight",
    "weight_tolerance",
    "valuation",
    "units",
    "barcodes",
    "cost",
    "price",
    "purchase_price",
)
PARTNER_COLUMNS = (
    "code",
    "is_supplier",
    "is_customer",
    "name",
    "name_en",
    "tax_id",
    "contact",
    "phone",
    "email",
    "address",
    "payment_terms",
    "lead_time_days",
    "credit_limit",
    "price_list",
    "active",
)
LOCATION_COLUMNS = ("site_id", "code", "parent", "level", "kind", "name", "active")
OPENING_STOCK_COLUMNS = (
    "site_id",
    "location",
    "item_code",
    "lot",
    "expiry",
    "qty",
    "uom",
    "unit_cost",
)
COLUMNS = {
    "items": ITEM_COLUMNS,
    "partners": PARTNER_COLUMNS,
    "locations": LOCATION_COLUMNS,
    "opening_stock": OPENING_STOCK_COLUMNS,
}
REQUIRED = {
    "items": ("item_code", "name", "uom"),
    "partners": ("code", "name"),
    "locations": ("site_id", "code", "level"),
    "opening_stock": ("site_id", "location", "item_code", "qty"),
}
FINANCIAL_COLUMNS = frozenset({"cost", "price", "purchase_price", "credit_limit", "unit_cost"})

Progress = Callable[[str, int, int], None]
"""Called as (phase, done, total): ``check`` while rows are checked, ``write`` after."""


@dataclass(frozen=True, slots=True)
class RowModels:
    """The models a row is validated with (see the module docstring)."""

    item: type[BaseModel]
    """With ``feed_fields()``, ``financial()``, ``units``, ``barcodes``, ``category``,
    ``valuation``: the API's ``ItemIn``."""
    partner: type[BaseModel]
    """With ``code`` and the partner fields: the API's ``PartnerCreate``."""
    location: type[BaseModel]
    """With ``code``, ``parent``, ``level``, ``kind``, ``name``, ``active``."""


@dataclass(frozen=True, slots=True)
class RowError:
    row: int
    column: str
    reason: str


class ImportRefusedError(InvalidError):
    """The file has errors; nothing was written. ``errors`` lists every one found."""

    def __init__(self, errors: list[RowError], *, truncated: bool = False) -> None:
        self.errors = errors
        self.truncated = truncated
        first = "; ".join(f"row {e.row}, {e.column}: {e.reason}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(
            f"the file was refused, nothing was imported: {len(errors)} error(s): {first}{more}"
        )


@dataclass(slots=True)
class ImportResult:
    kind: str
    rows: int
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    sha256: str = ""


# --- reading files --------------------------------------------------------------------


def read_table(data: bytes, fmt: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the data rows (with their row numbers) of a CSV or XLSX file.

    Entirely empty rows are skipped; every cell is text, trimmed.
    """
    if fmt not in FORMATS:
        raise InvalidError(f"format: must be one of {', '.join(FORMATS)}")
    rows = _xlsx_rows(data) if fmt == "xlsx" else _csv_rows(data)
    header: list[str] | None = None
    body: list[tuple[int, list[str]]] = []
    for number, cells in rows:
        if not any(cells):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in cells]
            continue
        body.append((number, cells))
        if len(body) > MAX_ROWS:
            raise InvalidError(f"the file has more than {MAX_ROWS} rows; split it")
    if header is None:
        raise InvalidError("the file is empty: it needs a header row and data rows")
    return header, body


def _csv_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidError(
            f"the file is not UTF-8 text (byte {exc.start}); save it as CSV UTF-8"
        ) from None
    if "\x00" in text:
        raise InvalidError("the file holds NUL characters: it is not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        for number, cells in enumerate(reader, start=1):
            yield number, [cell.strip() for cell in cells]
    except csv.Error as exc:
        raise InvalidError(f"row {reader.line_num}: not CSV: {exc}") from None


def _xlsx_rows(data: bytes) -> Iterator[tuple[int, list[str]]]:
    from openpyxl import load_workbook  # noqa: PLC0415 (only imports need it)

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise InvalidError(f"the file is not an XLSX workbook: {type(exc).__name__}") from None
    try:
        sheet = book.worksheets[0]
        for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
            yield number, [_cell_text(value) for value in values]
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        exact = Decimal(repr(value))
        return format(
            exact.quantize(Decimal(1)) if exact == exact.to_integral_value() else exact, "f"
        )
    return str(value).strip()


# --- writing files --------------------------------------------------------------------


def write_table(header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str) -> bytes:
    """CSV (UTF-8 with a BOM, which spreadsheet programs need to read Chinese) or XLSX
    (every cell text, so a GTIN keeps its leading zero)."""
    if fmt == "csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
        return ("\ufeff" + out.getvalue()).encode()
    from openpyxl import Workbook  # noqa: PLC0415

    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def export_rows(
    connection: Connection, kind: str, *, financial: bool, site_id: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """Every record of ``kind`` as rows of the import's columns (without the financial
    ones when ``financial`` is false)."""
    header = [c for c in COLUMNS[kind] if financial or c not in FINANCIAL_COLUMNS]
    with read_snapshot(connection):
        if kind == "items":
            records = _export_items(connection)
        elif kind == "partners":
            records = _export_partners(connection)
        else:
            records = _export_locations(connection, site_id)
    return header, [[record.get(column, "") for column in header] for record in records]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _export_items(connection: Connection) -> list[dict[str, str]]:
    found: list[dict[str, str]] = []
    after: str | None = None
    while True:
        page = item_service.list_items(connection=connection, after=after, limit=1000)
        for item in page.items:
            found.append(
                {
                    **{column: _text(getattr(item, column, None)) for column in ITEM_COLUMNS},
                    "units": "; ".join(f"{u.uom}={_text(u.factor)}" for u in item.units),
                    "barcodes": "; ".join(
                        b.barcode
                        + (f"@{b.uom}" if b.uom else "")
                        + ("!internal" if b.kind == "internal" and b.barcode.isdigit() else "")
                        + (f"*{_text(b.qty_per)}" if b.uom is None and b.qty_per != 1 else "")
                        for b in item.barcodes
                    ),
                }
            )
        if page.next_after is None:
            return found
        after = page.next_after


def _export_partners(connection: Connection) -> list[dict[str, str]]:
    rows = connection.execute(select(partners).order_by(partners.c.code)).all()
    return [{column: _text(getattr(row, column)) for column in PARTNER_COLUMNS} for row in rows]


def _export_locations(connection: Connection, site_id: str | None) -> list[dict[str, str]]:
    query = select(locations).order_by(locations.c.site_id, locations.c.code)
    if site_id is not None:
        query = query.where(locations.c.site_id == site_id)
    return [
        {
            "site_id": row.site_id,
            "code": row.code,
            "parent": _text(row.parent_code),
            "level": row.level,
            "kind": row.kind,
            "name": row.name,
            "active": _text(row.active),
        }
        for row in connection.execute(query)
    ]


# --- importing ------------------------------------------------------------------------


@dataclass(slots=True)
class _Checked:
    """What checking a file found: the rows that hold, and every error."""

    errors: list[RowError] = field(default_factory=list)
    rows: list[tuple[int, Any]] = field(default_factory=list)

    def add(self, row: int, column: str, reason: str) -> None:
        if len(self.errors) < MAX_ERRORS + 1:
            self.errors.append(RowError(row, column, reason))


def import_file(
    connection: Connection,
    *,
    kind: str,
    data: bytes,
    fmt: str,
    audit: AuditContext,
    models: RowModels,
    financial: bool = True,
    visible_sites: frozenset[str] | None = None,
    progress: Progress | None = None,
    projections: Projections | None = None,
    now: datetime | None = None,
) -> ImportResult:
    """Check the whole file, then write it in one transaction; ImportRefusedError if any
    row is bad (nothing written). ``projections`` run on opening stock's events, as on
    any central booking."""
    if kind not in KINDS:
        raise InvalidError(f"kind: must be one of {', '.join(KINDS)}")
    header, body = read_table(data, fmt)
    checked = _Checked()
    _check_header(kind, header, checked, financial=financial)
    if checked.errors:
        raise ImportRefusedError(checked.errors)
    for number, cells in body:
        if any(cells[len(header) :]):
            checked.add(
                number,
                "(row)",
                f"{len(cells)} cells, but the header names {len(header)} columns",
            )
    records = [
        (number, dict(zip(header, cells + [""] * (len(header) - len(cells)), strict=False)))
        for number, cells in body
    ]
    result = ImportResult(kind=kind, rows=len(records), sha256=hashlib.sha256(data).hexdigest())
    now = now or datetime.now(UTC)
    with write_transaction(connection), feed_writer(connection, changed_at=now) as feed:
        if kind == "items":
            _import_items(
                connection,
                feed,
                model=models.item,
                records=records,
                checked=checked,
                result=result,
                progress=progress,
                now=now,
            )
        elif kind == "partners":
            _import_partners(
                connection,
                model=models.partner,
                records=records,
                checked=checked,
                result=result,
                progress=progress,
                now=now,
            )
        elif kind == "opening_stock":
            _import_opening_stock(
                connection,
                records=records,
                checked=checked,
                result=result,
                progress=progress,
                now=now,
                visible_sites=visible_sites,
                actor=audit.actor.id or "central",
                projections=projections,
            )
        else:
            _import_locations(
                connection,
                feed,
                model=models.location,
                records=records,
                checked=checked,
                result=result,
                progress=progress,
                now=now,
                visible_sites=visible_sites,
            )
        record(
            connection,
            audit,
            action=f"import.{kind}",
            resource="import",
            resource_id=result.sha256,
            after={
                "rows": result.rows,
                "created": result.created,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "format": fmt,
            },
            at=now,
        )
    return result


def _check_header(kind: str, header: list[str], checked: _Checked, *, financial: bool) -> None:
    known = set(COLUMNS[kind])
    seen: set[str] = set()
    for column in header:
        if column == "":
            checked.add(1, "(header)", "a column has no name")
        elif column not in known:
            checked.add(
                1,
                clean_line(column, 64) or "(header)",
                f"not a column of {kind}; the columns are {', '.join(COLUMNS[kind])}",
            )
        elif column in seen:
            checked.add(1, column, "the column is given twice")
        elif column in FINANCIAL_COLUMNS and not financial:
            checked.add(1, column, "your roles lack the financial field group; drop the column")
        seen.add(column)
    for column in REQUIRED[kind]:
        if column not in seen:
            checked.add(1, column, "the column is missing")


def _refuse(checked: _Checked) -> None:
    if checked.errors:
        errors = sorted(checked.errors, key=lambda error: error.row)
        raise ImportRefusedError(errors[:MAX_ERRORS], truncated=len(errors) > MAX_ERRORS)


def _tick(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None and (done % 500 == 0 or done == total):
        progress(phase, done, total)


def _model_errors(checked: _Checked, number: int, exc: ValidationError) -> None:
    for error in exc.errors():
        column = ".".join(str(part) for part in error["loc"]) or "(row)"
        checked.add(number, column, error["msg"])


def _cells(record: dict[str, str], columns: Sequence[str]) -> dict[str, Any]:
    """A row's non-empty cells of ``columns``: an empty cell means the field's default."""
    return {column: record[column] for column in columns if record.get(column, "") != ""}


# --- items ----------------------------------------------------------------------------


@dataclass(slots=True)
class _ItemRow:
    item: ItemData
    units: list[item_service.UnitSpec] | None
    barcodes: list[item_service.BarcodeSpec] | None
    financial: dict[str, Decimal | None]
    valuation: str | None


def _parse_units(text: str) -> list[dict[str, str]]:
    units = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        uom, sep, rest = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not unit=factor (箱=12 盒)")
        factor, _, of = rest.strip().partition(" ")
        units.append(
            {
                "uom": uom.strip(),
                "factor": factor.strip(),
                **({"of": of.strip()} if of.strip() else {}),
            }
        )
    return units


def _parse_barcodes(text: str) -> list[dict[str, str]]:
    barcodes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        entry: dict[str, str] = {}
        code = part
        if "*" in code:
            code, _, entry["qty_per"] = code.partition("*")
        if code.endswith("!internal"):
            code = code.removesuffix("!internal")
            entry["kind"] = "internal"
        if "@" in code:
            code, _, entry["uom"] = code.partition("@")
        entry["barcode"] = code
        barcodes.append(entry)
    return barcodes


def _check_item_row(
    model: type[BaseModel],
    number: int,
    record: dict[str, str],
    checked: _Checked,
    known_categories: set[str],
) -> _ItemRow | None:
    given = _cells(record, ITEM_COLUMNS)
    code = given.pop("item_code", "")
    try:
        if "units" in given:
            given["units"] = _parse_units(given["units"])
        if "barcodes" in given:
            given["barcodes"] = _parse_barcodes(given["barcodes"])
    except ValueError as exc:
        checked.add(number, "units", str(exc))
        return None
    try:
        body: Any = model.model_validate(given)
    except ValidationError as exc:
        _model_errors(checked, number, exc)
        return None
    try:
        item = ItemData(item_code=code, **body.feed_fields())
    except ValidationError as exc:
        _model_errors(checked, number, exc)
        return None
    if body.category is not None and body.category not in known_categories:
        checked.add(number, "category", f"{body.category!r} does not exist")
        return None
    units = (
        None
        if body.units is None
        else [item_service.UnitSpec(u.uom, u.factor, u.of) for u in body.units]
    )
    barcodes = (
        None
        if body.barcodes is None
        else [item_service.BarcodeSpec(b.barcode, b.uom, b.qty_per, b.kind) for b in body.barcodes]
    )
    return _ItemRow(
        item=item,
        units=units,
        barcodes=barcodes,
        financial=body.financial(),
        valuation=body.valuation,
    )


def _import_items(
    connection: Connection,
    feed: FeedWriter,
    *,
    model: type[BaseModel],
    records: list[tuple[int, dict[str, str]]],
    checked: _Checked,
    result: ImportResult,
    progress: Progress | None,
    now: datetime,
) -> None:
    known_categories = set(connection.execute(select(categories.c.code)).scalars())
    parsed: list[tuple[int, _ItemRow]] = []
    first_row: dict[str, int] = {}
    barcode_row: dict[str, tuple[int, str]] = {}
    for done, (number, cells) in enumerate(records, start=1):
        row = _check_item_row(model, number, cells, checked, known_categories)
        _tick(progress, "check", done, len(records))
        if row is None:
            continue
        code = row.item.item_code
        if code in first_row:
            checked.add(number, "item_code", f"{code!r} is also on row {first_row[code]}")
            continue
        first_row[code] = number
        for spec in row.barcodes or ():
            if spec.barcode in barcode_row:
                other_row, other_item = barcode_row[spec.barcode]
                checked.add(
                    number,
                    "barcodes",
                    f"{spec.barcode!r} is also on row {other_row} (item {other_item!r})",
                )
            else:
                barcode_row[spec.barcode] = (number, code)
        parsed.append((number, row))
    codes = [row.item.item_code for _, row in parsed]
    current = _items_by_code(connection, codes)
    owners = _barcode_owners(connection, list(barcode_row))
    plans: list[
        tuple[
            _ItemRow,
            item_service.Item | None,
            dict[str, Decimal],
            dict[str, tuple[str | None, Decimal, str]],
        ]
    ] = []
    for number, row in parsed:
        code = row.item.item_code
        stored = current.get(code)
        try:
            factors, wanted = _plan_item(row, stored, owners)
        except InvalidError as exc:
            column = (
                "barcodes"
                if str(exc).startswith("barcodes")
                else "units"
                if str(exc).startswith("units")
                else "uom"
            )
            checked.add(number, column, str(exc))
            continue
        plans.append((row, stored, factors, wanted))
    _refuse(checked)
    _write_items(connection, feed, plans=plans, result=result, progress=progress, now=now)


def _items_by_code(connection: Connection, codes: list[str]) -> dict[str, item_service.Item]:
    found: dict[str, item_service.Item] = {}
    for start in range(0, len(codes), _CHUNK):
        chunk = codes[start : start + _CHUNK]
        for item in item_service._read_items(
            connection, items.c.item_code.in_(chunk), limit=len(chunk)
        ):
            found[item.item_code] = item
    return found


def _barcode_owners(connection: Connection, barcodes: list[str]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for start in range(0, len(barcodes), _CHUNK):
        chunk = barcodes[start : start + _CHUNK]
        for row in connection.execute(
            select(item_barcodes.c.barcode, item_barcodes.c.item_code).where(
                item_barcodes.c.barcode.in_(chunk)
            )
        ):
            owners[row.barcode] = row.item_code
    return owners


def _plan_item(
    row: _ItemRow, stored: item_service.Item | None, owners: dict[str, str]
) -> tuple[dict[str, Decimal], dict[str, tuple[str | None, Decimal, str]]]:
    code = row.item.item_code
    if stored is not None and stored.archived and row.item.active:
        raise InvalidError(f"uom: item {code!r} is archived; restore it or set active false")
    held = {} if stored is None else {u.uom: u.factor for u in stored.units}
    factors = held if row.units is None else item_service._resolve_units(row.item.uom, row.units)
    if row.barcodes is None:
        wanted = item_service._kept_barcodes([] if stored is None else stored.barcodes, factors)
    else:
        wanted = item_service._resolve_barcodes(code, row.item.uom, factors, row.barcodes)
    for barcode in wanted:
        owner = owners.get(barcode)
        if owner is not None and owner != code:
            raise InvalidError(
                f"barcodes: {barcode!r} belongs to item {owner!r}; delete it there first"
            )
    return factors, wanted


def _write_items(
    connection: Connection,
    feed: FeedWriter,
    *,
    plans: list[
        tuple[
            _ItemRow,
            item_service.Item | None,
            dict[str, Decimal],
            dict[str, tuple[str | None, Decimal, str]],
        ]
    ],
    result: ImportResult,
    progress: Progress | None,
    now: datetime,
) -> None:
    new_items: list[dict[str, Any]] = []
    new_units: list[dict[str, Any]] = []
    new_barcodes: list[dict[str, Any]] = []
    for done, (row, stored, factors, wanted) in enumerate(plans, start=1):
        item = row.item
        if stored is not None and stored.archived:
            item = item.model_copy(update={"archived": True})
        code = item.item_code
        money: dict[str, Any] = {
            name: value for name, value in row.financial.items() if value is not None
        }
        if row.valuation is not None:
            money["valuation"] = row.valuation
        if stored is None:
            version = feed.append(
                entity=FeedEntity.ITEM,
                key=code,
                op=ChangeOp.UPSERT,
                data=item_service.item_feed_data(item),
            )
            new_items.append(
                _item_values(item, version, now)
                | {
                    "valuation": "moving_average",
                    "cost": None,
                    "price": None,
                    "purchase_price": None,
                }
                | money
            )
            for uom in sorted(factors):
                unit_version = feed.append(
                    entity=FeedEntity.ITEM_UNIT,
                    key=f"{code} {uom}",
                    op=ChangeOp.UPSERT,
                    data={"item_code": code, "uom": uom, "factor": format(factors[uom], "f")},
                )
                new_units.append(
                    {
                        "item_code": code,
                        "uom": uom,
                        "factor": factors[uom],
                        "version": unit_version,
                        "updated_at": now,
                    }
                )
            for barcode in sorted(wanted):
                pack, qty_per, kind = wanted[barcode]
                barcode_version = feed.append(
                    entity=FeedEntity.BARCODE,
                    key=barcode,
                    op=ChangeOp.UPSERT,
                    data=item_service.barcode_feed_data(code, barcode, pack, qty_per),
                )
                new_barcodes.append(
                    {
                        "barcode": barcode,
                        "item_code": code,
                        "qty_per": qty_per,
                        "uom": pack,
                        "kind": kind,
                        "version": barcode_version,
                        "updated_at": now,
                    }
                )
            result.created += 1
        else:
            changed = _update_item(
                connection,
                feed,
                item=item,
                stored=stored,
                factors=factors,
                wanted=wanted,
                money=money,
                units_given=row.units is not None,
                now=now,
            )
            if changed:
                result.updated += 1
            else:
                result.unchanged += 1
        _tick(progress, "write", done, len(plans))
    if new_items:
        connection.execute(insert(items), new_items)
    if new_units:
        connection.execute(insert(item_units), new_units)
    if new_barcodes:
        connection.execute(insert(item_barcodes), new_barcodes)


def _item_values(item: ItemData, version: int, now: datetime) -> dict[str, Any]:
    return {
        "item_code": item.item_code,
        "name": item.name,
        "uom": item.uom,
        "active": item.active,
        "name_en": item.name_en,
        "category_code": item.category,
        "lot_tracked": item.lot_tracked,
        "expiry_tracked": item.expiry_tracked,
        "serial_tracked": item.serial_tracked,
        "shelf_life_days": item.shelf_life_days,
        "min_remaining_days": item.min_remaining_days,
        "unit_weight": item.unit_weight,
        "weight_tolerance": item.weight_tolerance,
        "archived": item.archived,
        "version": version,
        "updated_at": now,
    }


def _update_item(
    connection: Connection,
    feed: FeedWriter,
    *,
    item: ItemData,
    stored: item_service.Item,
    factors: dict[str, Decimal],
    wanted: dict[str, tuple[str | None, Decimal, str]],
    money: dict[str, Any],
    units_given: bool,
    now: datetime,
) -> bool:
    """Bring one existing item to the row's state; whether anything changed."""
    changed = False
    code = item.item_code
    if item_service._as_data(stored) != item:
        item_service._write_item(connection, feed, item, exists=True, now=now)
        changed = True
    money = {name: value for name, value in money.items() if getattr(stored, name) != value}
    if money:
        connection.execute(update(items).where(items.c.item_code == code).values(**money))
        changed = True
    held_units = {u.uom: u.factor for u in stored.units}
    if units_given and held_units != factors:
        item_service._replace_units(
            connection, feed, item_code=code, held=held_units, wanted=factors, now=now
        )
        changed = True
    held = {b.barcode: (b.uom, b.qty_per, b.kind) for b in stored.barcodes}
    if held != wanted:
        item_service._replace_barcodes(
            connection, feed, item_code=code, held=stored.barcodes, wanted=wanted, now=now
        )
        changed = True
    return changed


# --- partners -------------------------------------------------------------------------


def _import_partners(
    connection: Connection,
    *,
    model: type[BaseModel],
    records: list[tuple[int, dict[str, str]]],
    checked: _Checked,
    result: ImportResult,
    progress: Progress | None,
    now: datetime,
) -> None:
    known_terms = set(
        connection.execute(
            select(reference.c.code).where(reference.c.list_name == "payment_terms")
        ).scalars()
    )
    parsed: list[tuple[int, Any]] = []
    first_row: dict[str, int] = {}
    for done, (number, cells) in enumerate(records, start=1):
        _tick(progress, "check", done, len(records))
        body = _validate(model, _cells(cells, PARTNER_COLUMNS), number, checked)
        if body is None:
            continue
        if body.code in first_row:
            checked.add(number, "code", f"{body.code!r} is also on row {first_row[body.code]}")
            continue
        first_row[body.code] = number
        try:
            partner_service.check_partner(
                partner_service.PartnerFields(**body.model_dump(exclude={"code"}))
            )
        except InvalidError as exc:
            column, _, reason = str(exc).partition(": ")
            checked.add(number, column, reason)
            continue
        if body.payment_terms is not None and body.payment_terms not in known_terms:
            checked.add(
                number, "payment_terms", f"{body.payment_terms!r} is not in the payment terms list"
            )
            continue
        parsed.append((number, body))
    _refuse(checked)
    for done, (_number, body) in enumerate(parsed, start=1):
        values = body.model_dump(exclude={"code"})
        stored = connection.execute(
            select(partners).where(partners.c.code == body.code)
        ).one_or_none()
        if "credit_limit" not in body.model_fields_set and stored is not None:
            values["credit_limit"] = stored.credit_limit
        if stored is None:
            connection.execute(insert(partners).values(code=body.code, updated_at=now, **values))
            result.created += 1
        elif {name: getattr(stored, name) for name in values} != values:
            connection.execute(
                update(partners)
                .where(partners.c.code == body.code)
                .values(updated_at=now, **values)
            )
            result.updated += 1
        else:
            result.unchanged += 1
        _tick(progress, "write", done, len(parsed))


def _validate(model: type[BaseModel], given: dict[str, Any], number: int, checked: _Checked) -> Any:
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        _model_errors(checked, number, exc)
        return None


# --- locations ------------------------------------------------------------------------


def _import_locations(
    connection: Connection,
    feed: FeedWriter,
    *,
    model: type[BaseModel],
    records: list[tuple[int, dict[str, str]]],
    checked: _Checked,
    result: ImportResult,
    progress: Progress | None,
    now: datetime,
    visible_sites: frozenset[str] | None,
) -> None:
    known_sites = set(connection.execute(select(sites.c.site_id)).scalars())
    levels: dict[tuple[str, str], str] = {
        (row.site_id, row.code): row.level
        for row in connection.execute(
            select(locations.c.site_id, locations.c.code, locations.c.level)
        )
    }
    parsed: list[tuple[str, LocationData]] = []
    first_row: dict[tuple[str, str], int] = {}
    for done, (number, cells) in enumerate(records, start=1):
        _tick(progress, "check", done, len(records))
        given = _cells(cells, LOCATION_COLUMNS)
        site_id = given.pop("site_id", "")
        body = _validate(model, given, number, checked)
        if body is None:
            continue
        if site_id not in known_sites:
            checked.add(number, "site_id", f"{site_id!r} is not in the site master")
            continue
        if visible_sites is not None and site_id not in visible_sites:
            checked.add(number, "site_id", f"{site_id!r} is outside your sites")
            continue
        key = (site_id, body.code)
        if key in first_row:
            checked.add(number, "code", f"{body.code!r} is also on row {first_row[key]}")
            continue
        first_row[key] = number
        wanted_parent = site_service.PARENT_LEVEL[body.level]
        parent_level = None if body.parent is None else levels.get((site_id, body.parent))
        if wanted_parent is None and body.parent is not None:
            checked.add(number, "parent", "a zone is the top of the tree and has no parent")
            continue
        if wanted_parent is not None and parent_level != wanted_parent:
            reason = (
                f"a {body.level} needs a {wanted_parent} as parent"
                if body.parent is None
                else f"{body.parent!r} is not a {wanted_parent} of site {site_id!r} "
                "on an earlier row or at central"
            )
            checked.add(number, "parent", reason)
            continue
        levels[key] = body.level
        parsed.append(
            (
                site_id,
                LocationData(
                    code=body.code,
                    parent=body.parent,
                    level=body.level,
                    kind=body.kind,
                    name=body.name,
                    active=body.active,
                ),
            )
        )
    _refuse(checked)
    for done, (site_id, data) in enumerate(parsed, start=1):
        stored = connection.execute(
            select(locations).where(locations.c.site_id == site_id, locations.c.code == data.code)
        ).one_or_none()
        current = (
            None if stored is None else site_service._as_data(site_service._location_row(stored))
        )
        if current == data:
            result.unchanged += 1
        else:
            version = feed.append(
                entity=FeedEntity.LOCATION,
                key=data.code,
                op=ChangeOp.UPSERT,
                data=data.model_dump(mode="json"),
                site_id=site_id,
            )
            values = {
                "parent_code": data.parent,
                "level": data.level,
                "kind": data.kind,
                "name": data.name,
                "active": data.active,
                "version": version,
                "updated_at": now,
            }
            if stored is None:
                connection.execute(
                    insert(locations).values(site_id=site_id, code=data.code, **values)
                )
                result.created += 1
            else:
                connection.execute(
                    update(locations)
                    .where(locations.c.site_id == site_id, locations.c.code == data.code)
                    .values(**values)
                )
                result.updated += 1
        _tick(progress, "write", done, len(parsed))


# --- opening stock (期初库存) -------------------------------------------------------

_MICRO = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class _OpeningRow:
    """A checked row of opening stock, in the item's base unit."""

    row: int
    site_id: str
    location: str
    item: str
    lot: str | None
    expiry: date | None
    qty: Decimal
    uom: str
    unit_cost: Decimal | None

    def same_as(self, stored: Any) -> bool:
        return (stored.qty, stored.uom, stored.unit_cost, stored.expiry) == (
            self.qty,
            self.uom,
            self.unit_cost,
            self.expiry,
        )


def _amount(text: str, column: str, number: int, checked: _Checked) -> Decimal | None:
    """A cell as an exact amount of at most six decimal places, or an error named."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        checked.add(number, column, f"{text[:40]!r} is not a number")
        return None
    if not value.is_finite() or abs(value) >= 10**12 or value != value.quantize(_MICRO):
        checked.add(number, column, "must be a number below 10^12 with at most 6 decimals")
        return None
    return value


def _expiry(text: str, number: int, checked: _Checked) -> date | None:
    """``2027-03-31`` (a spreadsheet's date cell reads ``2027-03-31 00:00:00``)."""
    day = text.removesuffix(" 00:00:00")
    try:
        if len(day) == 10:
            return date.fromisoformat(day)
    except ValueError:
        pass
    checked.add(number, "expiry", f"{text[:40]!r} is not a date as YYYY-MM-DD")
    return None


def _opening_amounts(
    cells: dict[str, str], number: int, checked: _Checked
) -> tuple[Decimal | None, Decimal | None]:
    """The row's quantity (more than zero) and unit cost (not negative), as given."""
    qty = None
    if not cells.get("qty"):
        checked.add(number, "qty", "is required")
    else:
        qty = _amount(cells["qty"], "qty", number, checked)
        if qty is not None and qty <= 0:
            checked.add(number, "qty", "must be more than zero")
            qty = None
    cost = None
    if cells.get("unit_cost"):
        cost = _amount(cells["unit_cost"], "unit_cost", number, checked)
        if cost is not None and cost < 0:
            checked.add(number, "unit_cost", "must not be negative")
    return qty, cost


def _opening_item(code: str, known_items: dict[str, Any], number: int, checked: _Checked) -> Any:
    item = known_items.get(code)
    if item is None:
        checked.add(number, "item_code", f"{code[:64]!r} is not in the item master")
    elif item.archived:
        checked.add(number, "item_code", f"{code!r} is archived; restore it first")
        return None
    return item


def _check_opening_row(
    number: int,
    cells: dict[str, str],
    *,
    known_items: dict[str, Any],
    units: dict[tuple[str, str], Decimal],
    checked: _Checked,
) -> _OpeningRow | None:
    """The row's item rules (tracking, unit, amounts); the site and location are checked
    by the caller. Every fault of the row is reported, not only the first."""
    before = len(checked.errors)
    code = cells.get("item_code", "")
    item = _opening_item(code, known_items, number, checked)
    lot = cells.get("lot") or None
    if lot is not None and len(lot) > 40:
        checked.add(number, "lot", "at most 40 characters")
    expiry = _expiry(cells["expiry"], number, checked) if cells.get("expiry") else None
    qty, cost = _opening_amounts(cells, number, checked)
    if item is None:
        return None
    if item.lot_tracked and lot is None:
        checked.add(number, "lot", f"{code!r} is lot-tracked: give the lot")
    if item.expiry_tracked and not cells.get("expiry"):
        checked.add(number, "expiry", f"{code!r} is expiry-tracked: give the expiry date")
    uom = cells.get("uom") or item.uom
    factor = Decimal(1) if uom == item.uom else units.get((code, uom))
    if factor is None:
        checked.add(number, "uom", f"{code!r} has no unit {uom!r} (base unit {item.uom!r})")
    if len(checked.errors) > before or qty is None or factor is None:
        return None
    base_qty = qty * factor
    if base_qty != base_qty.quantize(_MICRO):
        checked.add(number, "qty", f"{qty} {uom} is more than 6 decimals in {item.uom}")
        return None
    return _OpeningRow(
        row=number,
        site_id=cells.get("site_id", ""),
        location=cells.get("location", ""),
        item=code,
        lot=lot,
        expiry=expiry,
        qty=base_qty,
        uom=item.uom,
        # per base unit, to the ledger's six places (a carton's cost over 12 units)
        unit_cost=None if cost is None else (cost / factor).quantize(_MICRO, ROUND_HALF_EVEN),
    )


def _import_opening_stock(
    connection: Connection,
    *,
    records: list[tuple[int, dict[str, str]]],
    checked: _Checked,
    result: ImportResult,
    progress: Progress | None,
    now: datetime,
    visible_sites: frozenset[str] | None,
    actor: str,
    projections: Projections | None,
) -> None:
    """Opening balances, booked as positive ``adjustment`` events of central's own stream
    (one per row, ref ``opening-stock <file> row <n>``) with the balances and projections
    in this transaction; each key (site, location, item, lot) once, ever.

    The same row again (same key, quantity, unit, cost and expiry) is unchanged, so a
    re-import of the same file books nothing; a different one for a key already imported
    is refused naming the row it came from: opening stock is set once, and later
    corrections are adjustments with a reason.
    """
    codes = sorted({cells.get("item_code", "") for _n, cells in records} - {""})
    known_items = {item.item_code: item for item in _opening_items(connection, codes)}
    units = {
        (row.item_code, row.uom): row.factor
        for row in connection.execute(
            select(item_units.c.item_code, item_units.c.uom, item_units.c.factor).where(
                item_units.c.item_code.in_(codes or [""])
            )
        )
    }
    known_sites = set(connection.execute(select(sites.c.site_id)).scalars())
    in_file = sorted({cells.get("site_id", "") for _n, cells in records} & known_sites)
    known_locations = {
        (row.site_id, row.code)
        for row in connection.execute(
            select(locations.c.site_id, locations.c.code).where(
                locations.c.site_id.in_(in_file or [""])
            )
        )
    }
    wanted: list[_OpeningRow] = []
    first_row: dict[tuple[str, str, str, str], int] = {}
    for done, (number, cells) in enumerate(records, start=1):
        _tick(progress, "check", done, len(records))
        site_id = cells.get("site_id", "")
        location = cells.get("location", "")
        if site_id not in known_sites:
            checked.add(number, "site_id", f"{site_id[:40]!r} is not in the site master")
        elif visible_sites is not None and site_id not in visible_sites:
            checked.add(number, "site_id", f"{site_id!r} is outside your sites")
        elif (site_id, location) not in known_locations:
            checked.add(number, "location", f"site {site_id!r} has no location {location[:64]!r}")
        parsed = _check_opening_row(
            number, cells, known_items=known_items, units=units, checked=checked
        )
        if parsed is None:
            continue
        key = (parsed.site_id, parsed.location, parsed.item, parsed.lot or NO_LOT)
        if key in first_row:
            checked.add(
                number,
                "item_code",
                f"the same site, location, item and lot as row {first_row[key]}",
            )
            continue
        first_row[key] = number
        stored = connection.execute(
            select(opening_stock).where(
                opening_stock.c.site_id == key[0],
                opening_stock.c.location == key[1],
                opening_stock.c.item == key[2],
                opening_stock.c.lot == key[3],
            )
        ).one_or_none()
        if stored is None:
            wanted.append(parsed)
        elif parsed.same_as(stored):
            result.unchanged += 1
        else:
            checked.add(
                number,
                "qty",
                f"opening stock of this site, location, item and lot was imported already "
                f"(row {stored.row} of file {stored.file_sha256[:12]}: {stored.qty} "
                f"{stored.uom}); correct it with a stock adjustment",
            )
    _refuse(checked)
    by_site: dict[str, list[_OpeningRow]] = {}
    for row in wanted:
        by_site.setdefault(row.site_id, []).append(row)
    done = 0
    for site_id in sorted(by_site):
        rows = by_site[site_id]
        central_events.lock_site(connection, site_id, now=now)
        events = central_events.book(
            connection,
            site_id=site_id,
            movements=[
                central_events.Movement(
                    kind=EventKind.ADJUSTMENT,
                    item=row.item,
                    location=row.location,
                    qty=row.qty,
                    uom=row.uom,
                    lot=row.lot,
                    expiry=row.expiry,
                    unit_cost=row.unit_cost,
                    ref=f"opening-stock {result.sha256[:16]} row {row.row}",
                )
                for row in rows
            ],
            actor=actor,
            ref=f"opening-stock {result.sha256[:16]}",
            now=now,
            projections=projections,
        )
        connection.execute(
            insert(opening_stock),
            [
                {
                    "site_id": site_id,
                    "location": row.location,
                    "item": row.item,
                    "lot": row.lot or NO_LOT,
                    "expiry": row.expiry,
                    "uom": row.uom,
                    "qty": row.qty,
                    "unit_cost": row.unit_cost,
                    "file_sha256": result.sha256,
                    "row": row.row,
                    "event_id": str(event.event_id),
                    "imported_at": now,
                }
                for row, event in zip(rows, events, strict=True)
            ],
        )
        result.created += len(rows)
        done += len(rows)
        _tick(progress, "write", done, len(wanted))


def _opening_items(connection: Connection, codes: list[str]) -> list[Any]:
    found: list[Any] = []
    for start in range(0, len(codes), _CHUNK):
        found.extend(
            connection.execute(
                select(
                    items.c.item_code,
                    items.c.uom,
                    items.c.archived,
                    items.c.lot_tracked,
                    items.c.expiry_tracked,
                ).where(items.c.item_code.in_(codes[start : start + _CHUNK]))
            ).all()
        )
    return found


__all__ = [
    "ImportRefusedError",
    "ImportResult",
    "RowError",
    "export_rows",
    "import_file",
    "write_table",
]
