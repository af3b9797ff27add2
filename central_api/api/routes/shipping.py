"""Shipping: an order's pick list, shipments confirmed at central, the delivery note.

As for every document (``central_api.api.documents``): a role check per action, the
caller's site scope (another site's order or shipment is a 404), ``Idempotency-Key`` on
the create and the command, ``ETag`` on every answer with one document and ``If-Match``
on the command (412 when stale), an audit entry. Nothing here carries a price.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse

from central_api.api.deps import ConnDep
from central_api.api.documents import ERRORS, After, CallerDep, Limit, answer, projections
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.schemas.shipping import (
    PickListOut,
    ShipmentIn,
    ShipmentOut,
    ShipmentPage,
    TrackingIn,
)
from central_api.services import shipping as service
from central_api.services.documents import DocCommand
from jxc.contract import Code, SiteId
from jxc.paths import SALES_ORDERS, SHIPMENTS, below_api_root

ShipmentId = Annotated[Code, Path(description="the shipment's id, e.g. SH000004")]
SoId = Annotated[Code, Path(description="the sales order's id, e.g. SO000012")]

pick_lists_router = APIRouter(prefix=below_api_root(SALES_ORDERS), tags=["sales orders"])
shipments_router = APIRouter(prefix=below_api_root(SHIPMENTS), tags=["shipments"])


@pick_lists_router.get(
    "/{so_id}/pick-list", dependencies=[Requires("pick_list.read")], responses=ERRORS
)
def read_pick_list(
    so_id: SoId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> PickListOut:
    """What to pick for the order: each reserved lot, its quantity and the sellable
    locations of the order's site holding it. No prices."""
    found = service.pick_list(connection, so_id, visible=principal.sites)
    return answer(response, found, PickListOut)


@shipments_router.get("", dependencies=[Requires("shipment.read")])
def read_shipments(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    so_id: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    sscc: Annotated[
        str | None,
        Query(pattern=r"^[0-9]{18}$", description="the SSCC-18 of a unit an edge packed"),
    ] = None,
    after: After = None,
    limit: Limit = 100,
) -> ShipmentPage:
    """Shipments by id; only the caller's sites."""
    found, next_after = service.list_shipments(
        connection,
        so_id=so_id,
        sscc=sscc,
        site_id=site_id,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return ShipmentPage(
        shipments=[ShipmentOut.model_validate(each) for each in found], next_after=next_after
    )


@shipments_router.post(
    "",
    dependencies=[Requires("shipment.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_shipment(*, body: ShipmentIn, request: Request, call: CallerDep) -> ShipmentOut:
    """Reserved goods of a confirmed order shipped from its site and booked at once
    (发货): the order's shipped quantities move, its reservations are consumed, and it
    closes when every line is shipped."""
    return call.run(
        lambda: service.create_shipment(
            call.connection,
            so_id=body.so_id,
            tracking_no=body.tracking_no,
            note=body.note,
            lines=[service.ShipmentLineInput(**line.model_dump()) for line in body.lines],
            actor=call.principal.name,
            visible=call.principal.sites,
            audit=call.audit,
            projections=projections(request),
            claim=call.claim,
        ),
        service.get_shipment,
        ShipmentOut,
    )


@shipments_router.get("/{shipment_id}", dependencies=[Requires("shipment.read")], responses=ERRORS)
def read_shipment(
    shipment_id: ShipmentId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> ShipmentOut:
    found = service.get_shipment(connection, shipment_id, visible=principal.sites)
    return answer(response, found, ShipmentOut)


@shipments_router.post(
    "/{shipment_id}/tracking", dependencies=[Requires("shipment.create")], responses=ERRORS
)
def set_tracking(*, shipment_id: ShipmentId, body: TrackingIn, call: CallerDep) -> ShipmentOut:
    """Record or correct the carrier's tracking number."""
    order = call.command(DocCommand, None, doc_id=shipment_id)
    return call.run(
        lambda: service.set_tracking(call.connection, order, body.tracking_no),
        service.get_shipment,
        ShipmentOut,
    )


@shipments_router.get(
    "/{shipment_id}/delivery-note",
    dependencies=[Requires("shipment.read")],
    responses=ERRORS,
    response_class=HTMLResponse,
)
def read_delivery_note(
    shipment_id: ShipmentId, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """The delivery note (送货单) as a printable page: what was shipped, lot by lot."""
    note = service.delivery_note(connection, shipment_id, visible=principal.sites)
    return HTMLResponse(render_delivery_note(note))


def render_delivery_note(note: service.DeliveryNote) -> str:
    """The page, every value escaped; a print stylesheet keeps it to the paper."""
    shipment = note.shipment
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(cell))}</td>"
            for cell in (
                line.so_line,
                line.item_code,
                note.item_names.get(line.item_code, ""),
                line.lot or "",
                line.expiry.isoformat() if line.expiry else "",
                line.qty,
                line.uom,
            )
        )
        + "</tr>"
        for line in shipment.lines
    )
    facts = "".join(
        f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>"
        for label, value in (
            ("送货单 / Delivery note", shipment.shipment_id),
            ("销售订单 / Sales order", shipment.so_id),
            ("客户 / Customer", f"{note.customer_name} ({shipment.customer})"),
            ("发货仓 / From", f"{note.site_name} ({shipment.site_id})"),
            ("日期 / Date", shipment.created_at.date().isoformat()),
            ("运单号 / Tracking", shipment.tracking_no or "—"),
        )
    )
    return (
        '<!doctype html><html lang="zh"><head><meta charset="utf-8">'
        f"<title>送货单 {escape(shipment.shipment_id)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "width:100%}td,th{border:1px solid #000;padding:.3em;text-align:left}"
        "dt{font-weight:bold}@media print{body{margin:0}}</style></head><body>"
        f"<h1>送货单 {escape(shipment.shipment_id)}</h1><dl>{facts}</dl>"
        "<table><thead><tr><th>行 Line</th><th>物料 Item</th><th>名称 Name</th><th>批号 Lot</th>"
        "<th>有效期 Expiry</th><th>数量 Qty</th><th>单位 Unit</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"<p>{escape(shipment.note)}</p>"
        "<p>签收 / Received by: ____________________</p></body></html>"
    )


routers: list[Any] = [pick_lists_router, shipments_router]
