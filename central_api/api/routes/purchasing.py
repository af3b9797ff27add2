"""Purchasing: requisitions, purchase orders and their commands, receiving exceptions.

A document's state changes only by a command, ``POST /{id}/<verb>``, each its own action
(``purchase_order.approve``...). Every create and command takes an ``Idempotency-Key``;
every answer with one document carries its version as ``ETag``, and a write or command
sent with ``If-Match`` is refused with 412 when the document changed since. A user limited
to some sites sees nothing of the others' documents (404, as if they did not exist).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.documents import (
    ERRORS,
    After,
    CallerDep,
    IfMatch,
    Limit,
    answer,
    refuse_unseen_prices,
    replaying,
)
from central_api.api.idempotency import IdempotencyDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.errors import InvalidError
from central_api.schemas.purchasing import (
    CommandIn,
    ConvertIn,
    ExceptionOut,
    ExceptionPage,
    ExceptionStatus,
    PoStatusText,
    PurchaseOrderIn,
    PurchaseOrderOut,
    PurchaseOrderPage,
    ReqStatusText,
    RequisitionIn,
    RequisitionOut,
    RequisitionPage,
    ResolveIn,
)
from central_api.services import purchasing as service
from jxc.contract import Code, SiteId
from jxc.paths import PURCHASE_EXCEPTIONS, PURCHASE_ORDERS, REQUISITIONS, below_api_root

PoId = Annotated[Code, Path(description="the purchase order's id, e.g. PO000012")]
ReqId = Annotated[Code, Path(description="the requisition's id, e.g. PR000003")]


# --- purchase orders ------------------------------------------------------------------------

purchase_orders_router = APIRouter(prefix=below_api_root(PURCHASE_ORDERS), tags=["purchase orders"])


def _po_out(po: service.PurchaseOrder, response: Response) -> PurchaseOrderOut:
    return answer(response, po, PurchaseOrderOut)


def _po_lines(body: PurchaseOrderIn) -> list[service.PoLineInput]:
    return [service.PoLineInput(**line.model_dump()) for line in body.lines]


@purchase_orders_router.get("", dependencies=[Requires("purchase_order.read")])
def read_purchase_orders(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status_: Annotated[PoStatusText | None, Query(alias="status")] = None,
    supplier: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    created_from: Annotated[datetime | None, Query(description="created at or after")] = None,
    created_to: Annotated[datetime | None, Query(description="created before")] = None,
    after: After = None,
    limit: Limit = 100,
) -> PurchaseOrderPage:
    """Purchase orders by id, filtered; only the caller's sites."""
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise InvalidError(f"{name}: give a time with its UTC offset, e.g. 2026-12-01T00:00Z")
    found, next_after = service.list_purchase_orders(
        connection,
        chosen=service.PoFilter(
            status=None if status_ is None else service.PoStatus(status_),
            supplier=supplier,
            site_id=site_id,
            created_from=created_from,
            created_to=created_to,
            visible_sites=principal.sites,
        ),
        after=after,
        limit=limit,
    )
    return PurchaseOrderPage(
        purchase_orders=[PurchaseOrderOut.model_validate(po) for po in found],
        next_after=next_after,
    )


@purchase_orders_router.post(
    "",
    dependencies=[Requires("purchase_order.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_purchase_order(
    *,
    body: PurchaseOrderIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> PurchaseOrderOut:
    """A new purchase order, as a draft."""
    refuse_unseen_prices(body.lines, principal)
    po = replaying(
        response,
        lambda: service.create_purchase_order(
            connection,
            supplier=body.supplier,
            site_id=body.site_id,
            note=body.note,
            lines=_po_lines(body),
            created_by=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda po_id: service.get_purchase_order(connection, po_id),
    )
    return _po_out(po, response)


@purchase_orders_router.post(
    "/from-requisitions",
    dependencies=[Requires("purchase_order.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def convert_requisitions(
    *,
    body: ConvertIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> list[PurchaseOrderOut]:
    """Approved requisitions become draft POs, one per supplier and site."""
    made = replaying(
        response,
        lambda: service.convert_requisitions(
            connection,
            req_ids=body.requisition_ids,
            created_by=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda ids: [
            service.get_purchase_order(connection, po_id) for po_id in ids.split(",") if po_id
        ],
    )
    return [PurchaseOrderOut.model_validate(po) for po in made]


@purchase_orders_router.get(
    "/{po_id}", dependencies=[Requires("purchase_order.read")], responses=ERRORS
)
def read_purchase_order(
    po_id: PoId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> PurchaseOrderOut:
    return _po_out(service.get_purchase_order(connection, po_id, visible=principal.sites), response)


@purchase_orders_router.put(
    "/{po_id}", dependencies=[Requires("purchase_order.create")], responses=ERRORS
)
def write_purchase_order(
    *,
    po_id: PoId,
    body: PurchaseOrderIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    response: Response,
    if_match: IfMatch = None,
) -> PurchaseOrderOut:
    """Replace a draft's supplier, site, note and lines (a PUT of the same body changes
    only the version, so it needs no key)."""
    refuse_unseen_prices(body.lines, principal)
    po = service.update_purchase_order(
        connection,
        po_id=po_id,
        supplier=body.supplier,
        site_id=body.site_id,
        note=body.note,
        lines=_po_lines(body),
        visible=principal.sites,
        if_match=if_match,
        audit=audit,
    )
    return _po_out(po, response)


def _po_command_route(
    verb: str, run: Callable[[Any, service.PoCommand, Any], service.PurchaseOrder], summary: str
) -> None:
    def command(
        *,
        po_id: PoId,
        call: CallerDep,
        settings: SettingsDep,
        body: CommandIn | None = None,
    ) -> PurchaseOrderOut:
        order = call.command(service.PoCommand, None if body is None else body.reason, po_id=po_id)
        return call.run(
            lambda: run(call.connection, order, settings),
            service.get_purchase_order,
            PurchaseOrderOut,
        )

    command.__name__ = f"{verb}_purchase_order"
    command.__doc__ = summary
    purchase_orders_router.post(
        f"/{{po_id}}/{verb}",
        dependencies=[Requires(f"purchase_order.{verb}")],
        responses=ERRORS,
    )(command)


_po_command_route(
    "approve",
    lambda c, o, s: service.approve_purchase_order(c, o, segregation=s.purchase_order_sod),
    "draft → approved; its lines reach the site's edge. Not by the PO's creator "
    "(segregation of duties, setting purchase_order_sod).",
)
_po_command_route(
    "send",
    lambda c, o, _s: service.send_purchase_order(c, o),
    "approved → sent to the supplier.",
)
_po_command_route(
    "cancel",
    lambda c, o, _s: service.cancel_purchase_order(c, o),
    "draft, approved or sent → cancelled, only before any receipt; the site's lines go.",
)
_po_command_route(
    "close",
    lambda c, o, _s: service.close_purchase_order(c, o),
    "partly_received or received → closed; the site stops receiving against it.",
)


# --- requisitions ---------------------------------------------------------------------------

requisitions_router = APIRouter(prefix=below_api_root(REQUISITIONS), tags=["requisitions"])


def _req_out(req: service.Requisition, response: Response) -> RequisitionOut:
    return answer(response, req, RequisitionOut)


def _req_lines(body: RequisitionIn) -> list[service.ReqLineInput]:
    return [service.ReqLineInput(**line.model_dump()) for line in body.lines]


@requisitions_router.get("", dependencies=[Requires("requisition.read")])
def read_requisitions(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status_: Annotated[ReqStatusText | None, Query(alias="status")] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    after: After = None,
    limit: Limit = 100,
) -> RequisitionPage:
    found, next_after = service.list_requisitions(
        connection,
        status=None if status_ is None else service.ReqStatus(status_),
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return RequisitionPage(
        requisitions=[RequisitionOut.model_validate(req) for req in found], next_after=next_after
    )


@requisitions_router.post(
    "",
    dependencies=[Requires("requisition.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_requisition(
    *,
    body: RequisitionIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> RequisitionOut:
    """A new requisition, as a draft."""
    req = replaying(
        response,
        lambda: service.create_requisition(
            connection,
            site_id=body.site_id,
            note=body.note,
            lines=_req_lines(body),
            created_by=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda req_id: service.get_requisition(connection, req_id),
    )
    return _req_out(req, response)


@requisitions_router.get("/{req_id}", dependencies=[Requires("requisition.read")], responses=ERRORS)
def read_requisition(
    req_id: ReqId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> RequisitionOut:
    return _req_out(service.get_requisition(connection, req_id, visible=principal.sites), response)


@requisitions_router.put(
    "/{req_id}", dependencies=[Requires("requisition.create")], responses=ERRORS
)
def write_requisition(
    *,
    req_id: ReqId,
    body: RequisitionIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    response: Response,
    if_match: IfMatch = None,
) -> RequisitionOut:
    """Replace a draft requisition's site, note and lines."""
    req = service.update_requisition(
        connection,
        req_id=req_id,
        site_id=body.site_id,
        note=body.note,
        lines=_req_lines(body),
        visible=principal.sites,
        if_match=if_match,
        audit=audit,
    )
    return _req_out(req, response)


def _req_command_route(verb: str, action: str, summary: str) -> None:
    def command(
        *,
        req_id: ReqId,
        call: CallerDep,
        settings: SettingsDep,
        body: CommandIn | None = None,
    ) -> RequisitionOut:
        order = call.command(
            service.ReqCommand, None if body is None else body.reason, req_id=req_id
        )
        return call.run(
            lambda: service.move_requisition(
                call.connection, order, verb, segregation=settings.requisition_sod
            ),
            service.get_requisition,
            RequisitionOut,
        )

    command.__name__ = f"{verb}_requisition"
    command.__doc__ = summary
    requisitions_router.post(
        f"/{{req_id}}/{verb}", dependencies=[Requires(action)], responses=ERRORS
    )(command)


_req_command_route("submit", "requisition.create", "draft → submitted, for approval.")
_req_command_route(
    "approve",
    "requisition.approve",
    "submitted → approved. Not by its creator (setting requisition_sod).",
)
_req_command_route("reject", "requisition.approve", "submitted → rejected, with a reason.")
_req_command_route(
    "cancel", "requisition.cancel", "draft or submitted → cancelled (withdrawn), with a reason."
)


# --- exceptions -----------------------------------------------------------------------------

exceptions_router = APIRouter(
    prefix=below_api_root(PURCHASE_EXCEPTIONS), tags=["purchase exceptions"]
)


@exceptions_router.get("", dependencies=[Requires("purchase_order.read")])
def read_exceptions(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status_: Annotated[ExceptionStatus | None, Query(alias="status")] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    po_id: Annotated[Code | None, Query()] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Limit = 100,
) -> ExceptionPage:
    """What receiving raised (over-receipts and receipts that fit no open line)."""
    found, next_after = service.list_exceptions(
        connection,
        status=status_,
        site_id=site_id,
        po_id=po_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return ExceptionPage(
        exceptions=[ExceptionOut.model_validate(found_one) for found_one in found],
        next_after=next_after,
    )


@exceptions_router.post(
    "/{exception_id}/resolve",
    dependencies=[Requires("purchase_exception.resolve")],
    responses=ERRORS,
)
def resolve_exception(
    *,
    exception_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: ResolveIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ExceptionOut:
    """open → resolved, saying what was decided."""
    found = replaying(
        response,
        lambda: service.resolve_exception(
            connection,
            exception_id=exception_id,
            resolution=body.resolution,
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda found_id: service.get_exception(connection, int(found_id), visible=principal.sites),
    )
    return ExceptionOut.model_validate(found)
