"""Customer returns (退货): authorise, receive into quarantine, restock or scrap a line,
close short what never came back.

As for every document (``central_api.api.documents``): a role check per action, the
caller's site scope (another site's return is a 404), ``Idempotency-Key`` on the create
and every command, ``ETag`` and ``If-Match`` (412 when stale), an audit entry.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from central_api.api.deps import ConnDep
from central_api.api.documents import ERRORS, After, CallerDep, Limit, answer, projections
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.schemas.customer_returns import (
    CloseShortIn,
    RestockIn,
    ReturnIn,
    ReturnOut,
    ReturnPage,
    ScrapIn,
)
from central_api.services import customer_returns as service
from central_api.services.documents import DocCommand
from jxc.contract import Code, SiteId
from jxc.paths import CUSTOMER_RETURNS, below_api_root

ReturnId = Annotated[Code, Path(description="the return's id, e.g. RA000002")]

router = APIRouter(prefix=below_api_root(CUSTOMER_RETURNS), tags=["customer returns"])


@router.get("", dependencies=[Requires("customer_return.read")])
def read_returns(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    so_id: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> ReturnPage:
    found, next_after = service.list_returns(
        connection,
        so_id=so_id,
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return ReturnPage(
        customer_returns=[ReturnOut.model_validate(each) for each in found],
        next_after=next_after,
    )


@router.post(
    "",
    dependencies=[Requires("customer_return.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_return(*, body: ReturnIn, call: CallerDep) -> ReturnOut:
    """A return authorisation against shipped lines of a sales order; nothing moves yet."""
    return call.run(
        lambda: service.create_return(
            call.connection,
            so_id=body.so_id,
            reason=body.reason,
            lines=[service.ReturnLineInput(**line.model_dump()) for line in body.lines],
            actor=call.principal.name,
            visible=call.principal.sites,
            audit=call.audit,
            claim=call.claim,
        ),
        service.get_return,
        ReturnOut,
    )


@router.get("/{return_id}", dependencies=[Requires("customer_return.read")], responses=ERRORS)
def read_return(
    return_id: ReturnId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> ReturnOut:
    found = service.get_return(connection, return_id, visible=principal.sites)
    return answer(response, found, ReturnOut)


@router.post(
    "/{return_id}/receive", dependencies=[Requires("customer_return.receive")], responses=ERRORS
)
def receive_return(*, return_id: ReturnId, request: Request, call: CallerDep) -> ReturnOut:
    """authorised → received: the goods are booked into the site's quarantine location."""
    order = call.command(DocCommand, None, doc_id=return_id)
    return call.run(
        lambda: service.receive_return(call.connection, order, projections=projections(request)),
        service.get_return,
        ReturnOut,
    )


@router.post(
    "/{return_id}/restock", dependencies=[Requires("customer_return.dispose")], responses=ERRORS
)
def restock_line(
    *, return_id: ReturnId, body: RestockIn, request: Request, call: CallerDep
) -> ReturnOut:
    """A received line passes inspection: moved from quarantine to a storage location."""
    decision = service.Decision(
        command=call.command(DocCommand, None, doc_id=return_id),
        line_no=body.line_no,
        location=body.location,
    )
    return call.run(
        lambda: service.decide_line(
            call.connection, decision, "restock", projections=projections(request)
        ),
        service.get_return,
        ReturnOut,
    )


@router.post(
    "/{return_id}/scrap", dependencies=[Requires("customer_return.dispose")], responses=ERRORS
)
def scrap_line(
    *, return_id: ReturnId, body: ScrapIn, request: Request, call: CallerDep
) -> ReturnOut:
    """A received line is scrapped out of quarantine, with a reason code."""
    decision = service.Decision(
        command=call.command(DocCommand, None, doc_id=return_id),
        line_no=body.line_no,
        reason_code=body.reason_code,
    )
    return call.run(
        lambda: service.decide_line(
            call.connection, decision, "scrap", projections=projections(request)
        ),
        service.get_return,
        ReturnOut,
    )


@router.post(
    "/{return_id}/close-short",
    dependencies=[Requires("customer_return.dispose")],
    responses=ERRORS,
)
def close_short(
    *, return_id: ReturnId, body: CloseShortIn, request: Request, call: CallerDep
) -> ReturnOut:
    """The lines of which nothing arrived are closed with zero (a reason is required);
    the site's returns station receives nothing more of the return."""
    order = call.command(DocCommand, body.reason, doc_id=return_id)
    return call.run(
        lambda: service.close_short(call.connection, order, projections=projections(request)),
        service.get_return,
        ReturnOut,
    )


routers: list[Any] = [router]
