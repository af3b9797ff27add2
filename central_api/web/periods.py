"""The console's period close (月结) and lot recall pages.

They call the services the API routes call, with the user's rights: ``period.read`` to see
the closed months (values only with the financial group), ``period.close`` for the button
that closes the next month, ``period.reopen`` for the form that reopens the last one;
``stock.read`` for the recall view (customers with ``shipment.read`` or
``sales_order.read``). A refusal (the month has not ended, is out of order, the user is
limited to some sites) comes back as the page with its reason over it and the refusal's
status. The menu entries are added here, so this module owns what it shows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.api.routes.periods import may_see_customers
from central_api.core.principal import Principal, PrincipalDep
from central_api.services import periods as service
from central_api.services import recall as recall_service
from central_api.services.idempotency import IdempotentReplay
from central_api.services.reports import record_read
from central_api.web.inventory import STOCK
from central_api.web.purchasing import _REFUSALS, _status_of
from central_api.web.render import CONSOLE_ROOT, N_, NAVIGATION, NavEntry, render
from central_api.web.replenishment import INBOX
from central_api.web.reports import WORDS
from central_api.web.routes import form_claim, redirect

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

PERIODS: Final = f"{CONSOLE_ROOT}/periods"
RECALL: Final = f"{CONSOLE_ROOT}/recall"

# After the planning pages (suggestions, the inbox): importing them first puts them there.
_after_stock = max(
    (i for i, entry in enumerate(NAVIGATION) if entry.group == STOCK or entry.path == INBOX),
    default=len(NAVIGATION) - 1,
)
NAVIGATION[_after_stock + 1 : _after_stock + 1] = [
    NavEntry(RECALL, N_("Lot recall"), "stock.read", group=STOCK),
    NavEntry(PERIODS, N_("Period close"), "period.read", group=STOCK),
]

STATUS_LABELS: Final[dict[str, str]] = {"closed": N_("Closed"), "reopened": N_("Reopened")}


def _posted(posted: Any, name: str, limit: int = 200) -> str:
    return str(posted.get(name, "")).strip()[:limit]


def _periods_page(
    request: Request,
    connection: Connection,
    principal: Principal,
    *,
    refusal: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = service.list_periods(
        connection,
        financial=principal.financial,
        visible=principal.sites,
        now=datetime.now(UTC),
    )
    return render(
        request,
        "periods.html",
        {
            "found": found,
            "financial": principal.financial,
            "can_close": principal.can("period.close") and principal.sites is None,
            "can_reopen": principal.can("period.reopen"),
            "key": str(uuid.uuid4()),
            "status_labels": STATUS_LABELS,
            "refusal": refusal,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/periods", dependencies=[Requires("period.read")])
def periods_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> HTMLResponse:
    """The closed months, newest first, with the close and reopen commands."""
    page = _periods_page(request, connection, principal)
    record_read(connection, audit, name="periods", site_id=None, filters={}, fmt="html", rows=None)
    return page


async def _period_command(
    request: Request,
    connection: Connection,
    principal: Principal,
    run: Any,
) -> Response:
    raw = await request.body()
    posted = await request.form()
    claim = form_claim(request, principal, _posted(posted, "idempotency_key"), raw)
    try:
        run(posted, claim)
    except IdempotentReplay:
        pass
    except _REFUSALS as refused:
        return _periods_page(
            request, connection, principal, refusal=str(refused), status_code=_status_of(refused)
        )
    return redirect(request, PERIODS)


@pages.post("/periods/close", dependencies=[Requires("period.close")])
async def close_period_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _period_command(
        request,
        connection,
        principal,
        lambda posted, claim: service.close_period(
            connection,
            _posted(posted, "period", 7),
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
    )


@pages.post("/periods/reopen", dependencies=[Requires("period.reopen")])
async def reopen_period_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    def run(posted: Any, claim: Any) -> None:
        version = _posted(posted, "version", 20)
        service.reopen_period(
            connection,
            _posted(posted, "period", 7),
            reason=_posted(posted, "reason", 1000),
            actor=principal.name,
            if_match=f'"{version}"' if version.isdigit() else None,
            audit=audit,
            claim=claim,
        )

    return await _period_command(request, connection, principal, run)


@pages.get("/recall", dependencies=[Requires("stock.read")])
def recall_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    item: Annotated[str, Query(max_length=64)] = "",
    lot: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """Where a lot is, where it came from and who received it."""
    item, lot = item.strip(), lot.strip()
    found = None
    if item and lot:
        found = recall_service.recall(
            connection,
            item=item,
            lot=lot,
            visible=principal.sites,
            show_customers=may_see_customers(principal),
        )
    page = render(
        request,
        "recall.html",
        {"item": item, "lot": lot, "found": found, "kind_labels": WORDS},
        principal=principal,
    )
    if found is not None:
        record_read(
            connection,
            audit,
            name="lot-recall",
            site_id=None,
            filters={"item": item, "lot": lot},
            fmt="html",
            rows=len(found.holdings) + len(found.customers) + len(found.suppliers),
        )
    return page
