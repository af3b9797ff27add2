"""Orders placed by an online shop (电商订单接入): a shop's order becomes a sales order,
exactly once per (channel, external_id), confirmed at once if the shop asks.

A shop cannot know whether an order it sent arrived when the answer is lost, and it
retries for as long as it takes, often with no Idempotency-Key of its own making (and a
key lives a day; a shop's retry queue may not). So the shop's own order id is the key:
``sales_orders`` has a unique index on (``channel``, ``external_id``) and keeps the
SHA-256 of the request that made the order (``import_sha256``). The lookup, the check and
the insert run in one write transaction (:func:`documents.document_write`):

* no order yet: a draft is made like ``POST /sales-orders`` makes one (the same line,
  customer and site checks), audited as ``sales_order.import``;
* an order with the same hash: a retry; the transaction writes nothing and the route
  answers with the order as it is now (``Idempotent-Replayed: true``);
* an order with another hash: refused (409) naming the order, since the shop has two
  different orders under one id.

Two requests of one order at the same instant: SQLite's write lock orders them; on
PostgreSQL the second's insert meets the unique index, waits for the first's commit and
fails, which central answers 409 "retry", and the retry is a replay.

A line names the item by its code or by a barcode (a GTIN as the shop's catalogue has
it, found in any of its spellings, :func:`barcodes.gtin_spellings`). The quantity counts
the barcode's pack unit (a carton's GTIN orders cartons) unless the line names a unit; a
barcode that stands for several base units in no unit of the item's is refused rather
than guessed.

``confirm`` runs the existing confirm (credit check, FEFO reservation) as a second
transaction after the draft is committed, so a refused confirm (over the credit limit)
keeps the draft, answered with why; the shop's retry of that order replays the draft and
does not confirm again (a person decides, as with any refused confirm).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from central_api.errors import ConflictError, InvalidError, NotFoundError
from central_api.models.items import item_barcodes
from central_api.models.sales import sales_orders
from central_api.models.shops import shop_channels
from central_api.services import sales
from central_api.services.audit import AuditContext
from central_api.services.barcodes import gtin_spellings
from central_api.services.documents import check_site, document_write, now_utc, plain, utc
from central_api.services.feed import read_snapshot
from central_api.services.idempotency import IdempotencyClaim, IdempotentReplay

ACTION = "sales_order.import"
ROTATE_ACTION = "shop_channel.rotate_secret"
MAX_OVERLAP_S = 7 * 86400
"""The longest an old shop secret may stay accepted after a rotation."""


@dataclass(frozen=True, slots=True)
class ShopLine:
    """One line as the shop sends it: ``item_code`` or ``barcode`` (exactly one)."""

    qty: Decimal
    unit_price: Decimal
    item_code: str | None = None
    barcode: str | None = None
    uom: str | None = None
    tax_rate: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ShopOrder:
    channel: str
    external_id: str
    customer: str
    site_id: str
    lines: Sequence[ShopLine]
    note: str = ""
    min_remaining_days: int | None = None
    confirm: bool = False


@dataclass(frozen=True, slots=True)
class Imported:
    """What the import made: the order, and why the confirm asked for was refused (None:
    not asked, or done). A replay is not an outcome but :class:`IdempotentReplay`."""

    order: sales.SalesOrder
    confirm_refused: str | None = None


class ExternalIdTakenError(ConflictError):
    """The shop's order id already made an order, from a different request."""

    def __init__(self, channel: str, external_id: str, so_id: str) -> None:
        super().__init__(
            f"external_id: order {external_id!r} of channel {channel!r} was already imported "
            f"as sales order {so_id} with different content; an order id is imported once "
            "(change it there, or send the new order under a new id)"
        )
        self.so_id = so_id


def fingerprint(order: ShopOrder) -> str:
    """The hash that tells a retry from a different order: of the order's content, not
    its bytes, so a retry serialised afresh (other key order, spacing, ``"2"`` for
    ``"2.0"``) is still the same order."""

    def number(value: Decimal | None) -> str | None:
        return None if value is None else str(plain(value))

    content: dict[str, Any] = {
        "channel": order.channel,
        "external_id": order.external_id,
        "customer": order.customer,
        "site_id": order.site_id,
        "note": order.note,
        "min_remaining_days": order.min_remaining_days,
        "confirm": order.confirm,
        "lines": [
            {
                "item_code": line.item_code,
                "barcode": line.barcode,
                "qty": number(line.qty),
                "uom": line.uom,
                "unit_price": number(line.unit_price),
                "tax_rate": number(line.tax_rate),
            }
            for line in order.lines
        ],
    }
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _resolved(connection: Connection, index: int, line: ShopLine) -> sales.SoLineInput:
    """The line by item code, with a barcode turned into its item and pack unit."""
    where = f"lines[{index}]"
    if (line.item_code is None) == (line.barcode is None):
        raise InvalidError(f"{where}: give item_code or barcode, exactly one")
    item_code, uom = line.item_code, line.uom
    if line.barcode is not None:
        found = connection.execute(
            select(item_barcodes.c.item_code, item_barcodes.c.uom, item_barcodes.c.qty_per)
            .where(item_barcodes.c.barcode.in_(gtin_spellings(line.barcode)))
            .order_by(item_barcodes.c.barcode)
        ).first()
        if found is None:
            raise InvalidError(
                f"{where}.barcode: no item has barcode {line.barcode!r}; add it to the item "
                "master or send the line by item_code"
            )
        if found.uom is None and found.qty_per != 1:
            raise InvalidError(
                f"{where}.barcode: barcode {line.barcode!r} stands for {plain(found.qty_per)} "
                f"base units of item {found.item_code!r} in no unit of its own; send the "
                "line by item_code and uom"
            )
        item_code = str(found.item_code)
        uom = uom if uom is not None else found.uom
    assert item_code is not None
    return sales.SoLineInput(
        item_code=item_code,
        qty=line.qty,
        uom=uom,
        unit_price=line.unit_price,
        tax_rate=line.tax_rate,
    )


def _lines(connection: Connection, order: ShopOrder) -> list[sales.SoLineInput]:
    lines = [_resolved(connection, index, line) for index, line in enumerate(order.lines)]
    seen: dict[tuple[str, str | None], int] = {}
    for index, line in enumerate(lines):
        earlier = seen.setdefault((line.item_code, line.uom), index)
        if earlier != index:
            raise InvalidError(
                f"lines[{index}]: item {line.item_code!r} in the same unit as lines[{earlier}]; "
                "send one line per item and unit"
            )
    return lines


def _existing(connection: Connection, order: ShopOrder) -> tuple[str, str | None] | None:
    found = connection.execute(
        select(sales_orders.c.so_id, sales_orders.c.import_sha256).where(
            sales_orders.c.channel == order.channel,
            sales_orders.c.external_id == order.external_id,
        )
    ).first()
    return None if found is None else (found.so_id, found.import_sha256)


def import_order(
    connection: Connection,
    order: ShopOrder,
    *,
    actor: str,
    visible: frozenset[str] | None,
    audit: AuditContext,
    claim: IdempotencyClaim | None = None,
    today: date | None = None,
) -> Imported:
    """Make the shop's order a draft sales order once; confirm it if asked.

    Raises :class:`IdempotentReplay` with the order's id for a retry (of the shop's id or
    of the Idempotency-Key), so the route answers it as every replay is answered."""
    digest = fingerprint(order)
    with document_write(connection, action=ACTION, audit=audit, claim=claim) as written:
        check_site(connection, order.site_id, visible)
        existing = _existing(connection, order)
        if existing is not None:
            so_id, made_by = existing
            if made_by != digest:
                raise ExternalIdTakenError(order.channel, order.external_id, so_id)
            raise IdempotentReplay(so_id)
        price_list = sales.check_customer(connection, order.customer)
        lines = _lines(connection, order)
        so_id = sales.insert_draft(
            connection,
            customer=order.customer,
            site_id=order.site_id,
            note=order.note,
            min_remaining_days=order.min_remaining_days,
            created_by=actor,
            now=written.now,
        )
        connection.execute(
            update(sales_orders)
            .where(sales_orders.c.so_id == so_id)
            .values(channel=order.channel, external_id=order.external_id, import_sha256=digest)
        )
        sales.write_lines(connection, so_id, price_list, lines, today or written.now.date())
        draft = sales.read_so(connection, so_id)
        assert draft is not None
        written.doc_id, written.site_id = so_id, order.site_id
        written.after = {
            **sales.audit_state(draft),
            "channel": order.channel,
            "external_id": order.external_id,
        }
    if not order.confirm:
        return Imported(order=draft)
    command = sales.SoCommand(
        actor=actor, visible=visible, if_match=None, audit=audit, so_id=so_id, today=today
    )
    try:
        confirmed = sales.confirm_sales_order(connection, command)
    except ConflictError as refusal:
        kept = sales.get_sales_order(connection, so_id)
        return Imported(order=kept, confirm_refused=str(refusal))
    return Imported(order=confirmed)


# --- the channels' signing secrets ------------------------------------------------------
#
# A shop signs its orders with a secret central also holds (HMAC). Rotating it cannot be
# instant on both sides: the shop's system is redeployed on its own schedule, and its retry
# queue holds orders already signed with the old secret. So a rotation keeps the old
# secret valid for an overlap (``overlap_s``, a day by default, a week at most) and then
# drops it for good: long enough to switch, bounded so that a leaked secret stops working
# at a known time, and 0 when the secret leaked and must stop now.
#
# Where a channel's secrets come from: its ``shop_channels`` row once it was rotated at
# central; before that the setting ``shop_secrets`` (the first rotation keeps the setting's
# secret as the overlapping old one, so moving a channel from the setting to central is
# itself a rotation without refused orders).


@dataclass(frozen=True, slots=True)
class ChannelSigning:
    """Whether and how a channel signs; never its secrets, except ``secret`` in the
    answer to a rotation (shown once)."""

    channel: str
    source: str
    """``central`` (rotated here), or ``setting`` (``shop_secrets`` only)."""
    version: int
    previous_until: datetime | None
    changed_by: str | None
    changed_at: datetime | None
    secret: str | None = None


class UnknownChannelError(NotFoundError):
    def __init__(self, channel: str) -> None:
        super().__init__(f"channel {channel!r} has no signing secret at central")


def _signing(row: Row[Any], *, now: datetime, secret: str | None = None) -> ChannelSigning:
    until = utc(row.previous_until)
    return ChannelSigning(
        channel=row.channel,
        source="central",
        version=int(row.version),
        previous_until=until if until is not None and until > now else None,
        changed_by=row.changed_by,
        changed_at=utc(row.changed_at),
        secret=secret,
    )


def signing_secrets(
    connection: Connection, channel: str, configured: Mapping[str, str], *, now: datetime
) -> list[str]:
    """The secrets an order of ``channel`` may be signed with at ``now`` (the current one
    first); empty if the channel signs nothing."""
    with read_snapshot(connection):
        row = connection.execute(
            select(shop_channels).where(shop_channels.c.channel == channel)
        ).one_or_none()
    if row is None:
        return [configured[channel]] if channel in configured else []
    accepted = [str(row.secret)]
    until = utc(row.previous_until)
    if row.previous_secret is not None and until is not None and now < until:
        accepted.append(str(row.previous_secret))
    return accepted


def list_channels(
    connection: Connection, configured: Mapping[str, str], *, now: datetime | None = None
) -> list[ChannelSigning]:
    """Every channel that signs, from central's rows and the setting, by name."""
    moment = now or now_utc()
    with read_snapshot(connection):
        rows = connection.execute(select(shop_channels)).all()
    found = {row.channel: _signing(row, now=moment) for row in rows}
    for channel in configured:
        found.setdefault(channel, ChannelSigning(channel, "setting", 0, None, None, None))
    return [found[channel] for channel in sorted(found)]


def get_channel(connection: Connection, channel: str) -> ChannelSigning:
    with read_snapshot(connection):
        row = connection.execute(
            select(shop_channels).where(shop_channels.c.channel == channel)
        ).one_or_none()
    if row is None:
        raise UnknownChannelError(channel)
    return _signing(row, now=now_utc())


def rotate_channel_secret(
    connection: Connection,
    channel: str,
    *,
    overlap_s: int,
    configured: Mapping[str, str],
    actor: str,
    audit: AuditContext,
    claim: IdempotencyClaim | None,
) -> ChannelSigning:
    """A new secret for ``channel``, answered this once; the one it replaces (central's,
    or the setting's) is still accepted for ``overlap_s`` seconds. A channel that signed
    nothing signs from now on. A retried key raises ``IdempotentReplay`` (no secret)."""
    if not 0 <= overlap_s <= MAX_OVERLAP_S:
        raise InvalidError(f"overlap_s: from 0 to {MAX_OVERLAP_S} seconds (a week)")
    secret = "shsec_" + secrets.token_urlsafe(32)
    with document_write(connection, action=ROTATE_ACTION, audit=audit, claim=claim) as written:
        row = connection.execute(
            select(shop_channels).where(shop_channels.c.channel == channel).with_for_update()
        ).one_or_none()
        replaced = configured.get(channel) if row is None else str(row.secret)
        until = written.now + timedelta(seconds=overlap_s) if replaced and overlap_s else None
        values: dict[str, Any] = {
            "secret": secret,
            "previous_secret": replaced if until is not None else None,
            "previous_until": until,
            "changed_by": actor,
            "changed_at": written.now,
        }
        if row is None:
            connection.execute(insert(shop_channels).values(channel=channel, version=1, **values))
        else:
            connection.execute(
                update(shop_channels)
                .where(shop_channels.c.channel == channel)
                .values(version=row.version + 1, **values)
            )
        made = connection.execute(
            select(shop_channels).where(shop_channels.c.channel == channel)
        ).one()
        written.doc_id = channel
        written.before = None if row is None else {"version": int(row.version)}
        written.after = {
            "version": int(made.version),
            "old_secret_accepted_until": until,
            "replaced": "none" if replaced is None else ("setting" if row is None else "central"),
        }
        return _signing(made, now=written.now, secret=secret)
