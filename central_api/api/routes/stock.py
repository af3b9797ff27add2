"""``/api/v1/stock``: balances per (site, location, item, lot) as the ledgers sum them.

A user limited to some sites, and a site's own token, see only those sites: asking for
another by ``site_id`` is refused, and without ``site_id`` the others are left out.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter
from sqlalchemy import Connection

from central_api.api.deps import on_connection
from central_api.api.permissions import Requires
from central_api.core.principal import principal_in_trip, trip_principal
from central_api.errors import SiteOutOfScopeError
from central_api.schemas.stock import StockBalanceOut
from central_api.services.stock import list_balances
from jxc.contract import Code, SiteId, Text
from jxc.paths import STOCK, below_api_root

router = APIRouter(prefix=below_api_root(STOCK), tags=["stock"])


_ANSWER = TypeAdapter(list[StockBalanceOut])


@router.get(
    "",
    dependencies=[Requires("stock.read", site=True)],
    responses={403: {"description": "The site is outside the caller's sites."}},
    response_model=list[StockBalanceOut],
)
@principal_in_trip
async def read_stock(
    request: Request,
    *,
    site_id: Annotated[SiteId | None, Query()] = None,
    item: Annotated[Code | None, Query()] = None,
    lot: Annotated[
        Text | None,
        Query(max_length=40, description='"" for stock kept without a lot; omit for any lot'),
    ] = None,
    location: Annotated[Code | None, Query()] = None,
) -> Response:
    """Balances matching every filter given, ordered by site, location, item, lot."""

    def answer(connection: Connection) -> bytes:
        """The caller's lookup and rule, the query and the answer's JSON in one trip to a
        worker thread (a console polls this; a ``def`` route with a connection dependency
        took three, and the principal's lookup one more)."""
        principal = trip_principal()
        if site_id is not None and not principal.sees_site(site_id):
            raise SiteOutOfScopeError(who=principal.label, site_id=site_id)
        balances = list_balances(
            connection=connection,
            site_id=site_id,
            item=item,
            lot=lot,
            location=location,
            sites=principal.sites,
        )
        return _ANSWER.dump_json([StockBalanceOut.model_validate(b) for b in balances])

    return Response(await on_connection(request, answer), media_type="application/json")
