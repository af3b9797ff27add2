"""Reports as files: CSV streamed a chunk at a time, XLSX written row by row to a
temporary file and then streamed from it.

XLSX is written with openpyxl in write-only mode, already a dependency (the master-data
imports and exports use it): rows go straight to a temporary file as they are appended,
so memory stays flat however long the report, and it supports everything a report needs
(a number format per cell, frozen header row, column widths). XlsxWriter's
``constant_memory`` mode would do the same faster, but would be a second XLSX library
for one feature; docs/reports.md has the measurement that makes openpyxl good enough.

Numbers are written as numbers (exact ``Decimal``, never a float) with a format per kind,
so a spreadsheet sums them; text that starts like a formula is kept text, in XLSX (its
cell type) and in CSV (a leading apostrophe), so opening an export runs nothing.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import IO, Any, Final

from central_api.services.reports import Column

NUMBER_FORMATS: Final[dict[str, str]] = {
    "qty": "#,##0.######",
    "money": "#,##0.00",
    "percent": "0.00%",
    "int": "0",
    "date": "yyyy-mm-dd",
    "datetime": "yyyy-mm-dd hh:mm:ss",
}
"""The XLSX number format of each column kind (text columns have none)."""

WIDTHS: Final[dict[str, int]] = {
    "qty": 14,
    "money": 16,
    "percent": 10,
    "int": 10,
    "date": 12,
    "datetime": 20,
}
_CHUNK: Final = 64 * 1024
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def text_of(value: Any) -> str:
    """A cell as text: exact decimals in their shortest spelling, times in ISO 8601 UTC."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _safe(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def csv_chunks(
    headings: Sequence[str], columns: Sequence[Column], pages: Iterable[Sequence[dict[str, Any]]]
) -> Iterator[bytes]:
    """The report as CSV (UTF-8 with a BOM, which spreadsheet programs need to read
    Chinese), one chunk per 64 KiB, reading ``pages`` only as the client takes them."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow(headings)
    for page in pages:
        for row in page:
            writer.writerow(
                [
                    _safe(text_of(row.get(column.key)))
                    if column.kind == "text"
                    else text_of(row.get(column.key))
                    for column in columns
                ]
            )
            if buffer.tell() > _CHUNK:
                yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text.encode()


def write_xlsx(
    title: str,
    headings: Sequence[str],
    columns: Sequence[Column],
    pages: Iterable[Sequence[dict[str, Any]]],
) -> IO[bytes]:
    """The report as an XLSX workbook in a temporary file (rewound, deleted on close):
    bold frozen header row, a width and a number format per column."""
    from openpyxl import Workbook  # noqa: PLC0415 (only exports pay for the import)
    from openpyxl.cell import WriteOnlyCell  # noqa: PLC0415
    from openpyxl.styles import Font  # noqa: PLC0415
    from openpyxl.utils import get_column_letter  # noqa: PLC0415

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=title[:31])
    sheet.freeze_panes = "A2"
    for index, (column, heading) in enumerate(zip(columns, headings, strict=True), start=1):
        width = WIDTHS.get(column.kind, max(12, min(40, len(heading) * 2 + 4)))
        sheet.column_dimensions[get_column_letter(index)].width = width
    bold = Font(bold=True)
    header = []
    for heading in headings:
        cell = WriteOnlyCell(sheet, value=heading)
        cell.font = bold
        header.append(cell)
    sheet.append(header)
    for page in pages:
        for row in page:
            sheet.append([_xlsx_cell(sheet, WriteOnlyCell, column, row) for column in columns])
    out = tempfile.TemporaryFile()  # noqa: SIM115 (the caller streams it, then closes it)
    book.save(out)
    out.seek(0)
    return out


def _xlsx_cell(sheet: Any, make: Any, column: Column, row: dict[str, Any]) -> Any:
    value = row.get(column.key)
    if value is None:
        return None
    if column.kind == "text":
        cell = make(sheet, value=str(value))
        cell.data_type = "s"  # never a formula, whatever the text starts with
        return cell
    if isinstance(value, datetime):
        # Excel has no time zones: the time is written in UTC, as the heading says.
        value = value.astimezone(UTC).replace(tzinfo=None)
    cell = make(sheet, value=value)
    cell.number_format = NUMBER_FORMATS.get(column.kind, "General")
    return cell


def file_chunks(source: IO[bytes]) -> Iterator[bytes]:
    """``source`` a chunk at a time, closed (and so deleted) at the end."""
    try:
        while chunk := source.read(_CHUNK):
            yield chunk
    finally:
        source.close()
