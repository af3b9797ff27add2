"""Finding items from the console's search box: by code, name, or any barcode.

The item service pages the master in code order but has no search (and its module belongs
to the master-data work); this is the console's read model for the list page, a read of
the same two tables. A search that is a barcode, as a scanner types it, names the item
directly (:func:`item_for_scan`): the page then opens that item, as a scan should.

A scan may carry more than the barcode: a GS1-128 element string (``01`` GTIN, ``17``
expiry, ``10`` lot ...) or a GTIN written with or without its leading zeros. The GTIN is
taken out with ``biip`` and each spelling an item could have been given is tried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from sqlalchemy import Connection, func, or_, select

from central_api.models.items import item_barcodes, items
from central_api.services.feed import read_snapshot

MAX_QUERY: Final = 200
"""Characters of a search the console reads; a scan is far shorter."""
PAGE: Final = 50
BARCODE_CHARACTERS: Final = r"[\x21-\x7e]{1,64}"
"""What a stored barcode can be (``jxc.feed.Barcode``): a spelling of another kind is not
looked up at all (PostgreSQL refuses a NUL in a parameter outright)."""
CONTROL_CHARACTERS: Final = r"[\x00-\x1f\x7f]"
"""Dropped from a search: a scanner's GS separator, a NUL, a stray line feed."""


@dataclass(slots=True)
class ItemRow:
    """One line of the item list."""

    item_code: str
    name: str
    uom: str
    active: bool
    barcodes: list[tuple[str, Decimal]] = field(default_factory=list)
    name_en: str = ""


@dataclass(frozen=True, slots=True)
class SearchPage:
    rows: list[ItemRow]
    next_after: str | None


def barcode_spellings(scan: str) -> list[str]:
    """Every barcode ``scan`` could stand for: itself, and its GTIN in its usual lengths."""
    spellings = [scan]
    gtin = _gtin_in(scan)
    if gtin is not None:
        digits = gtin.lstrip("0")
        for length in (8, 12, 13, 14):
            if len(digits) <= length:
                spellings.append(digits.zfill(length))
    return list(dict.fromkeys(spellings))


def _gtin_in(scan: str) -> str | None:
    """The GTIN a scan carries: a bare GTIN, or AI 01 of a GS1 element string, raw or in
    the printed form with parentheses; None if it carries none."""
    # biip is imported here, not at the top: its GS1 prefix table takes 0.1 s to load,
    # which every central process (and every test worker) paid at start for a page
    # few requests reach (docs/performance.md, "Central's start").
    import biip  # noqa: PLC0415
    from biip import BiipException  # noqa: PLC0415
    from biip.gs1_messages import GS1Message  # noqa: PLC0415

    try:
        if scan.startswith("("):
            message: GS1Message | None = GS1Message.parse_hri(scan)
        else:
            parsed = biip.parse(scan)
            if parsed.gtin is not None:
                return str(parsed.gtin.value)
            message = parsed.gs1_message
    except BiipException:  # no symbol biip knows: then the scan is all there is
        return None
    except IndexError:  # biip 5.2 reads past the end of a lone "]" (a symbology flag)
        return None
    for element in message.element_strings if message is not None else ():
        if element.gtin is not None:
            return str(element.gtin.value)
    return None


def item_for_scan(connection: Connection, scan: str) -> str | None:
    """The code of the item one of ``scan``'s spellings is a barcode of, if any."""
    spellings = [s for s in barcode_spellings(scan) if re.fullmatch(BARCODE_CHARACTERS, s)]
    if not spellings:
        return None
    with read_snapshot(connection):
        found = connection.execute(
            select(item_barcodes.c.barcode, item_barcodes.c.item_code).where(
                item_barcodes.c.barcode.in_(spellings)
            )
        ).all()
    owners = {row.barcode: row.item_code for row in found}
    return next((owners[spelling] for spelling in spellings if spelling in owners), None)


def search_items(
    connection: Connection, query: str, *, after: str | None = None, limit: int = PAGE
) -> SearchPage:
    """Items whose code or name contains ``query`` (any case), or one of whose barcodes
    starts with it, in code order, a page at a time."""
    text = re.sub(CONTROL_CHARACTERS, "", query).strip()[:MAX_QUERY]
    needle = text.lower()
    matches = or_(
        func.lower(items.c.item_code).contains(needle, autoescape=True),
        func.lower(items.c.name).contains(needle, autoescape=True),
        func.lower(items.c.name_en).contains(needle, autoescape=True),
        items.c.item_code.in_(
            select(item_barcodes.c.item_code).where(
                item_barcodes.c.barcode.startswith(text, autoescape=True)
            )
        ),
    )
    chosen = select(
        items.c.item_code, items.c.name, items.c.uom, items.c.active, items.c.name_en
    ).where(matches)
    if after is not None:
        chosen = chosen.where(items.c.item_code > after)
    chosen = chosen.order_by(items.c.item_code).limit(limit + 1)
    with read_snapshot(connection):
        rows = [
            ItemRow(row.item_code, row.name, row.uom, row.active, name_en=row.name_en or "")
            for row in connection.execute(chosen)
        ]
        page = rows[:limit]
        by_code = {row.item_code: row for row in page}
        if by_code:
            for barcode in connection.execute(
                select(item_barcodes.c.item_code, item_barcodes.c.barcode, item_barcodes.c.qty_per)
                .where(item_barcodes.c.item_code.in_(sorted(by_code)))
                .order_by(item_barcodes.c.item_code, item_barcodes.c.barcode)
            ):
                by_code[barcode.item_code].barcodes.append((barcode.barcode, barcode.qty_per))
    return SearchPage(rows=page, next_after=page[-1].item_code if len(rows) > limit else None)
