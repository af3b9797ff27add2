"""Damage recorded on the spot (报损 at the edge): a ``scrap`` event with a reason code,
booked in the site's ledger at once, offline or not.

A clerk who finds broken, expired, lost or sampled goods records them where they are
(``jxc edge write-off``, or a station calling :func:`record_write_off`): the stock leaves the
edge's ledger at that moment, whatever central later decides, because the goods are gone.
The reason must be an active code of the ``reason_codes`` list meant for write-offs (its
``applies_to`` names ``write_off``), as central has it; the list reaches the edge through
the feed, so the check works offline. The quantity may be given in any unit of the item
and is booked in the base unit, exactly.

Each write-off takes the site's next write-off number (``S01-WO00000001``), counted from
the ledger in the transaction that books it, so numbers are gapless and a crash gives
the number back with the event. Central makes it a write-off document when the event
arrives; above its approval threshold that document waits for someone to approve it
(``docs/inventory.md``, "Damage on the spot").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Final

from edge_agent.catalog import Catalog
from edge_agent.ledger import EventDraft, Ledger
from edge_agent.stations.errors import StationError
from jxc.contract import EventKind, LedgerEvent
from jxc.write_off import REASONS_LIST, edge_number, reason_ref

log = logging.getLogger("edge_agent.write_off")

WRITE_OFF: Final = "write_off"


class WriteOffRefusedError(StationError):
    """The write-off cannot be recorded as given (unknown reason, item or unit, bad qty)."""


@dataclass(frozen=True, slots=True)
class WriteOff:
    """What to write off: ``qty`` of ``item`` in ``uom`` (None: the base unit)."""

    item: str
    qty: Decimal
    location: str
    reason: str
    uom: str | None = None
    lot: str | None = None
    actor: str | None = None
    """Who recorded it (the clerk's name), carried as the event's ``actor``."""


def write_off_reasons(catalog: Catalog) -> list[str]:
    """The codes a write-off may give, as central's list last said."""
    return [
        entry.code
        for entry in catalog.references(REASONS_LIST)
        if WRITE_OFF in (entry.attrs.get("applies_to") or [])
    ]


def record_write_off(
    ledger: Ledger,
    catalog: Catalog,
    wanted: WriteOff,
    *,
    device_id: str | None = None,
    now: datetime | None = None,
) -> LedgerEvent:
    """Book one write-off line as a ``scrap`` event under the site's next write-off number.
    Raises :class:`WriteOffRefusedError` (nothing booked) when it cannot be taken."""
    reasons = write_off_reasons(catalog)
    if wanted.reason not in reasons:
        known = ", ".join(reasons) or "none yet: let the agent pull central's feed once"
        raise WriteOffRefusedError(
            f"REFUSED: {wanted.reason!r} is no reason for a write-off (known: {known})"
        )
    item = catalog.item(wanted.item)
    if item is None:
        raise WriteOffRefusedError(f"REFUSED: item {wanted.item!r} is unknown at this site")
    if not wanted.qty > 0:
        raise WriteOffRefusedError(f"REFUSED: the quantity must be positive, got {wanted.qty}")
    qty = wanted.qty
    if wanted.uom is not None and wanted.uom != item.uom:
        factor = catalog.units(item.item_code).get(wanted.uom)
        if factor is None:
            raise WriteOffRefusedError(
                f"REFUSED: {item.item_code} has no unit {wanted.uom!r} (base unit {item.uom})"
            )
        qty = wanted.qty * factor
    expiry = _lot_expiry(ledger, item.item_code, wanted.lot)
    prefix = edge_number(ledger.site_id, 0)[:-8]
    ledger.check_free_disk()
    with ledger.transaction() as conn:
        (taken,) = conn.execute(
            "SELECT COUNT(DISTINCT doc_id) FROM events WHERE substr(doc_id, 1, ?) = ?",
            (len(prefix), prefix),
        ).fetchone()
        number = edge_number(ledger.site_id, int(taken) + 1)
        event = ledger.append_in(
            conn,
            EventDraft(
                kind=EventKind.SCRAP,
                item=item.item_code,
                lot=wanted.lot,
                expiry=expiry,
                location=wanted.location,
                qty=-qty,
                uom=item.uom,
                ref=reason_ref(wanted.reason),
                device_id=device_id,
                actor=wanted.actor,
                doc_type=WRITE_OFF,
                doc_id=number,
                doc_line=1,
            ),
            occurred_at=now,
        )
    log.info(
        "write-off recorded",
        extra={"number": number, "item": item.item_code, "qty": str(qty), "reason": wanted.reason},
    )
    return event


def _lot_expiry(ledger: Ledger, item: str, lot: str | None) -> date | None:
    """The lot's expiry as its events state it (the latest, if they disagree)."""
    if lot is None:
        return None
    with ledger.reading() as conn:
        (expiry,) = conn.execute(
            "SELECT MAX(json_extract(body, '$.expiry')) FROM events WHERE item = ? AND lot = ?",
            (item, lot),
        ).fetchone()
    return date.fromisoformat(expiry) if expiry else None
