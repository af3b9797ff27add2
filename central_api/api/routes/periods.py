"""Period close (月结) and the lot recall view over HTTP.

``period.read`` lists the closed months (their closing values only with the financial
field group, of the caller's sites); ``period.close`` closes the next month (every site,
so only a user not limited to some); ``period.reopen`` reopens the last one with a reason
and ``If-Match``. Both commands take an ``Idempotency-Key`` and leave an audit entry; the
reads leave one too (``report.read``: who looked at closing values, who traced a lot to
its customers). The recall view takes ``stock.read``; its customers need
``shipment.read`` or ``sales_order.read`` as well.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.documents import ERRORS, CallerDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.schemas.periods import PeriodOut, PeriodsOut, RecallOut, ReopenIn
from central_api.services import periods as service
from central_api.services import recall as recall_service
from central_api.services.reports import record_read
from jxc.contract import Code, Text
from jxc.paths import LOT_RECALL, PERIODS, below_api_root

router = APIRouter(prefix=below_api_root(PERIODS), tags=["periods"])
recall_router = APIRouter(prefix=below_api_root(LOT_RECALL), tags=["stock"])

PeriodPath = Annotated[str, Path(pattern=service.PERIOD_PATTERN, examples=["2026-11"])]
LotQuery = Annotated[Text, Query(min_length=1, max_length=40)]


def may_see_customers(principal: Principal) -> bool:
    return principal.can("shipment.read") or principal.can("sales_order.read")


@router.get("", dependencies=[Requires("period.read")], responses=ERRORS)
def read_periods(*, connection: ConnDep, principal: PrincipalDep, audit: AuditDep) -> PeriodsOut:
    """Every month ever closed (newest first), the last closed and the next to close."""
    found = service.list_periods(
        connection,
        financial=principal.financial,
        visible=principal.sites,
        now=datetime.now(UTC),
    )
    record_read(
        connection,
        audit,
        name="periods",
        site_id=None,
        filters={},
        fmt="json",
        rows=len(found.periods),
    )
    return PeriodsOut.model_validate(found)


def _read_one(connection: Any, principal: Principal, period: str) -> PeriodOut:
    return PeriodOut.model_validate(
        service.get_period(
            connection, period, financial=principal.financial, visible=principal.sites
        )
    )


@router.get("/{period}", dependencies=[Requires("period.read")], responses=ERRORS)
def read_period(
    *, period: PeriodPath, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> PeriodOut:
    """One month: who closed (or reopened) it and, per site, the stock value at its end as
    closed and as valuation says now (a late event dated inside it shows as a difference)."""
    found = _read_one(connection, principal, period)
    record_read(
        connection,
        audit,
        name="period",
        site_id=None,
        filters={"period": period},
        fmt="json",
        rows=len(found.values),
    )
    return found


@router.post("/{period}/close", dependencies=[Requires("period.close")], responses=ERRORS)
def close_period(*, period: PeriodPath, call: CallerDep) -> PeriodOut:
    """Close the month: it must have ended and follow the last closed one. Central
    bookings dated inside it are refused from now on (unless ``period.post_closed``);
    edge events dated inside it are stored and raise a ``closed_period`` exception."""
    return call.run(
        lambda: _read_one(
            call.connection,
            call.principal,
            service.close_period(
                call.connection,
                period,
                actor=call.principal.name,
                visible=call.principal.sites,
                audit=call.audit,
                claim=call.claim,
            ),
        ),
        lambda connection, found: _read_one(connection, call.principal, found),
        PeriodOut,
    )


@router.post("/{period}/reopen", dependencies=[Requires("period.reopen")], responses=ERRORS)
def reopen_period(*, period: PeriodPath, body: ReopenIn, call: CallerDep) -> PeriodOut:
    """Reopen the last closed month, saying why."""
    return call.run(
        lambda: _read_one(
            call.connection,
            call.principal,
            service.reopen_period(
                call.connection,
                period,
                reason=body.reason,
                actor=call.principal.name,
                if_match=call.if_match,
                audit=call.audit,
                claim=call.claim,
            ),
        ),
        lambda connection, found: _read_one(connection, call.principal, found),
        PeriodOut,
    )


@recall_router.get("", dependencies=[Requires("stock.read")], responses=ERRORS)
def read_recall(
    *,
    item: Annotated[Code, Query()],
    lot: LotQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> RecallOut:
    """Which sites and locations hold the lot, what is in transit, which suppliers it came
    from and which customers and counters it went to (within the caller's sites)."""
    found = recall_service.recall(
        connection,
        item=item,
        lot=lot,
        visible=principal.sites,
        show_customers=may_see_customers(principal),
    )
    record_read(
        connection,
        audit,
        name="lot-recall",
        site_id=None,
        filters={"item": item, "lot": lot},
        fmt="json",
        rows=len(found.holdings) + len(found.customers) + len(found.suppliers),
    )
    return RecallOut.model_validate(found)


routers = (router, recall_router)
