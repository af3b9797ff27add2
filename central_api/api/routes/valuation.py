"""``/api/v1/valuation``: what stock is worth per (site, item), and each movement's cost.

Every figure here is financial, so besides the ``valuation.read`` action the caller's
roles must show the financial field group (a role could be granted the action without
it); a user limited to some sites sees only those. Each read is an audit entry
(``valuation.read``): who looked at the value of which stock is itself worth keeping.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import on_connection
from central_api.api.permissions import Requires
from central_api.core.db import write_transaction
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, SiteOutOfScopeError
from central_api.schemas.valuation import ValuationEntryOut, ValuationOut
from central_api.services import valuation as service
from central_api.services.audit import AuditContext, record
from jxc.contract import Code, SiteId
from jxc.paths import VALUATION, below_api_root

router = APIRouter(prefix=below_api_root(VALUATION), tags=["valuation"])

_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "No financial field group, or the site is not the caller's."}
}


def _may_see(principal: Principal, site_id: str | None) -> None:
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    if site_id is not None and not principal.sees_site(site_id):
        raise SiteOutOfScopeError(who=principal.label, site_id=site_id)


def _audited(
    connection: Connection, audit: AuditContext, *, site_id: str | None, item: str | None, rows: int
) -> None:
    """The read's audit entry, after the read (whose implicit transaction ends here)."""
    connection.rollback()
    with write_transaction(connection):
        record(
            connection,
            audit,
            action="valuation.read",
            resource="valuation",
            resource_id=f"{site_id or '*'}/{item or '*'}",
            site_id=site_id,
            after={"rows": rows},
        )


@router.get("", dependencies=[Requires("valuation.read")], responses=_REFUSALS)
async def read_valuation(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site_id: Annotated[SiteId | None, Query()] = None,
    item: Annotated[Code | None, Query()] = None,
) -> list[ValuationOut]:
    """Quantity (base unit), value, average and last cost per (site, item), by site and
    item; every filter given must match."""
    _may_see(principal, site_id)

    def work(connection: Connection) -> list[ValuationOut]:
        service.settle_for_reading(connection)
        found = service.list_states(connection, site_id=site_id, item=item, sites=principal.sites)
        _audited(connection, audit, site_id=site_id, item=item, rows=len(found))
        return [ValuationOut.model_validate(row) for row in found]

    return await on_connection(request, work)


@router.get("/entries", dependencies=[Requires("valuation.read")], responses=_REFUSALS)
async def read_valuation_entries(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site_id: Annotated[SiteId, Query()],
    item: Annotated[Code, Query()],
    limit: Annotated[int, Query(ge=1, le=service.MAX_ENTRIES)] = service.MAX_ENTRIES,
) -> list[ValuationEntryOut]:
    """The latest movements of one (site, item) in valuation order (``occurred_at``),
    each with its cost of goods, and the running quantity and value after it."""
    _may_see(principal, site_id)

    def work(connection: Connection) -> list[ValuationEntryOut]:
        service.settle_for_reading(connection)
        found = service.list_entries(connection, site_id=site_id, item=item, limit=limit)
        _audited(connection, audit, site_id=site_id, item=item, rows=len(found))
        return [ValuationEntryOut.model_validate(row) for row in found]

    return await on_connection(request, work)
