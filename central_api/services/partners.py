"""Partners (往来单位): suppliers and customers; one partner may be both.

A supplier has a lead time and payment terms; a customer has a credit limit (financial:
absent for roles without the financial field group, in answers and in the audit log),
payment terms (账期) and a price list. Partners stay at central (no edge needs them) and
are never deleted, since documents will name them: set one inactive instead. Payment
terms must name an entry of the payment-terms reference list.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, insert, or_, select, update

from central_api.core.db import write_transaction
from central_api.errors import ConflictError, InvalidError, NotFoundError
from central_api.models.master import partners, reference_entries
from central_api.services import idempotency
from central_api.services.audit import AuditContext, record
from central_api.services.feed import read_snapshot

MAX_PARTNERS_PAGE = 1000


@dataclass(frozen=True, slots=True)
class PartnerFields:
    """What a writer sets; every field, since a PUT is the whole new state."""

    is_supplier: bool
    is_customer: bool
    name: str
    name_en: str = ""
    tax_id: str = ""
    contact: str = ""
    phone: str = ""
    email: str = ""
    address: str = ""
    payment_terms: str | None = None
    lead_time_days: int | None = None
    credit_limit: Decimal | None = None
    price_list: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class Partner(PartnerFields):
    code: str = ""
    updated_at: datetime = datetime.min


@dataclass(frozen=True, slots=True)
class PartnerFilter:
    role: str | None = None
    """``supplier`` or ``customer``."""
    q: str | None = None
    active: bool | None = None


class UnknownPartnerError(NotFoundError):
    def __init__(self, code: str) -> None:
        super().__init__(f"partner {code!r} does not exist")


class PartnerExistsError(ConflictError):
    def __init__(self, code: str) -> None:
        super().__init__(f"partner {code!r} exists already; change it with PUT")


_FIELDS = tuple(field.name for field in fields(PartnerFields))


def save_partner(
    connection: Connection,
    *,
    code: str,
    values: PartnerFields,
    audit: AuditContext,
    keep_credit_limit: bool = False,
    create_only: bool = False,
    claim: idempotency.IdempotencyClaim | None = None,
    now: datetime | None = None,
) -> tuple[Partner, bool]:
    """Create or replace a partner; (it, whether it was created).

    ``keep_credit_limit`` keeps the stored limit (a writer who cannot see it cannot send
    it back).
    """
    check_partner(values)
    now = now or datetime.now(UTC)
    with write_transaction(connection):
        idempotency.check(connection, claim)
        stored = _read(connection, code)
        if stored is not None and create_only:
            raise PartnerExistsError(code)
        if values.payment_terms is not None:
            known = connection.execute(
                select(reference_entries.c.code).where(
                    reference_entries.c.list_name == "payment_terms",
                    reference_entries.c.code == values.payment_terms,
                )
            ).scalar_one_or_none()
            if known is None:
                raise InvalidError(
                    f"payment_terms: {values.payment_terms!r} is not in the payment terms "
                    "list (PUT /api/v1/payment-terms/{code})"
                )
        row = {name: getattr(values, name) for name in _FIELDS}
        if keep_credit_limit:
            row["credit_limit"] = None if stored is None else stored.credit_limit
        if stored is None:
            connection.execute(insert(partners).values(code=code, updated_at=now, **row))
        elif _state(stored) != {"code": code, **row}:
            connection.execute(
                update(partners).where(partners.c.code == code).values(updated_at=now, **row)
            )
        written = _read(connection, code)
        assert written is not None
        idempotency.remember(connection, claim, code, now=now)
        record(
            connection,
            audit,
            action="partner.create" if stored is None else "partner.update",
            resource="partner",
            resource_id=code,
            before=None if stored is None else _state(stored),
            after=_state(written),
            at=now,
        )
        return written, stored is None


def check_partner(values: PartnerFields) -> None:
    """The rules a partner's fields must hold, whoever writes them (API or import)."""
    if not (values.is_supplier or values.is_customer):
        raise InvalidError("is_supplier, is_customer: a partner is a supplier, a customer or both")
    if values.lead_time_days is not None and not values.is_supplier:
        raise InvalidError("lead_time_days: only a supplier has a lead time")
    if values.credit_limit is not None and not values.is_customer:
        raise InvalidError("credit_limit: only a customer has a credit limit")
    if values.price_list is not None and not values.is_customer:
        raise InvalidError("price_list: only a customer has a price list")


def get_partner(connection: Connection, code: str) -> Partner:
    with read_snapshot(connection):
        stored = _read(connection, code)
    if stored is None:
        raise UnknownPartnerError(code)
    return stored


def list_partners(
    connection: Connection,
    *,
    after: str | None,
    limit: int,
    filters: PartnerFilter | None = None,
) -> tuple[list[Partner], str | None]:
    if not 1 <= limit <= MAX_PARTNERS_PAGE:
        raise ValueError(f"limit must be within 1..{MAX_PARTNERS_PAGE}, got {limit}")
    chosen = filters or PartnerFilter()
    conditions: list[ColumnElement[bool]] = []
    if after is not None:
        conditions.append(partners.c.code > after)
    if chosen.role == "supplier":
        conditions.append(partners.c.is_supplier.is_(True))
    elif chosen.role == "customer":
        conditions.append(partners.c.is_customer.is_(True))
    if chosen.active is not None:
        conditions.append(partners.c.active == chosen.active)
    if chosen.q:
        needle = chosen.q.lower()
        conditions.append(
            or_(
                # Lowered: PostgreSQL's LIKE minds case where SQLite's does not.
                func.lower(partners.c.code).startswith(needle, autoescape=True),
                func.lower(partners.c.name).contains(needle, autoescape=True),
                func.lower(partners.c.name_en).contains(needle, autoescape=True),
            )
        )
    query = select(partners).order_by(partners.c.code).limit(limit + 1)
    if conditions:
        query = query.where(and_(*conditions))
    with read_snapshot(connection):
        found = [_row(row) for row in connection.execute(query)]
    page = found[:limit]
    return page, (page[-1].code if len(found) > limit else None)


def _read(connection: Connection, code: str) -> Partner | None:
    row = connection.execute(select(partners).where(partners.c.code == code)).one_or_none()
    return None if row is None else _row(row)


def _row(row: Any) -> Partner:
    updated = row.updated_at
    return Partner(
        code=row.code,
        updated_at=updated.replace(tzinfo=UTC) if updated.tzinfo is None else updated,
        **{name: getattr(row, name) for name in _FIELDS},
    )


def _state(partner: Partner) -> dict[str, Any]:
    return {"code": partner.code, **{name: getattr(partner, name) for name in _FIELDS}}
