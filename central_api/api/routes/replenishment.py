"""Replenishment and the alerts inbox over HTTP.

Planning parameters and suggestions take ``replenishment.read`` / ``replenishment.write``
(purchasers; admin holds ``*``), turning a suggestion into a draft PO takes
``purchase_order.create`` (it is a PO made by the PO service), the inbox ``alert.read`` /
``alert.manage``, the negative-stock report ``stock.read``. Every one is limited to the
caller's sites (a site outside them is a 403; another site's alert a 404); every write
takes an ``Idempotency-Key`` and leaves an audit entry; alert commands take ``If-Match``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.documents import ERRORS, CallerDep, answer, replaying
from central_api.api.idempotency import IdempotencyDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.schemas.purchasing import PurchaseOrderOut
from central_api.schemas.replenishment import (
    AlertOut,
    AlertPage,
    AlertResolveIn,
    AlertStatusText,
    AssignIn,
    DraftPoIn,
    EvaluateExpiryIn,
    ExpiryDaysIn,
    ExpiryDaysOut,
    ExpiryOutcomeOut,
    NegativeOut,
    ParamsIn,
    ParamsOut,
    ParamsPage,
    SuggestionsOut,
    SupplierGroupOut,
)
from central_api.services import alerts, purchasing
from central_api.services import replenishment as service
from central_api.services.idempotency import IdempotencyClaim
from jxc.contract import Code, SiteId, Text
from jxc.paths import (
    ALERTS,
    EXPIRY_ALERT_DAYS,
    REPLENISHMENT_PARAMS,
    REPLENISHMENT_SUGGESTIONS,
    STOCK_NEGATIVE,
    below_api_root,
)

AlertId = Annotated[int, Path(ge=1, le=2**31 - 1)]
On = Annotated[date | None, Query(description="the day to judge by; absent: today (UTC)")]


def _today(on: date | None) -> date:
    return on or datetime.now(UTC).date()


params_router = APIRouter(prefix=below_api_root(REPLENISHMENT_PARAMS), tags=["replenishment"])


@params_router.get("", dependencies=[Requires("replenishment.read")], responses=ERRORS)
def read_replenishment_params(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId, Query()],
    after: Annotated[Code | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_ROWS)] = 100,
) -> ParamsPage:
    """The site's planning parameters, in item code order."""
    found, next_after = service.list_params(
        connection, site_id=site_id, visible=principal.sites, after=after, limit=limit
    )
    return ParamsPage(
        params=[ParamsOut.model_validate(each) for each in found], next_after=next_after
    )


@params_router.put("", dependencies=[Requires("replenishment.write")], responses=ERRORS)
def set_replenishment_params(
    *,
    body: ParamsIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> list[ParamsOut]:
    """Set up to 500 items' parameters at one site at once (all or none)."""
    rows = [service.ParamsInput(**row.model_dump()) for row in body.rows]
    found = replaying(
        response,
        lambda: service.set_params(
            connection,
            site_id=body.site_id,
            rows=rows,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda _site: service.list_params(
            connection,
            site_id=body.site_id,
            visible=principal.sites,
            after=None,
            limit=service.MAX_ROWS,
        )[0],
    )
    wanted = {row.item_code for row in rows}
    return [ParamsOut.model_validate(each) for each in found if each.item_code in wanted]


expiry_router = APIRouter(prefix=below_api_root(EXPIRY_ALERT_DAYS), tags=["replenishment"])


@expiry_router.get("", dependencies=[Requires("replenishment.read")], responses=ERRORS)
def read_expiry_alert_days(connection: ConnDep) -> list[ExpiryDaysOut]:
    """Categories with expiry alert bands of their own; others inherit or use 30,60,90."""
    return [
        ExpiryDaysOut(category_code=code, days=list(days))
        for code, days in service.list_expiry_days(connection)
    ]


@expiry_router.put(
    "/{category_code}", dependencies=[Requires("replenishment.write")], responses=ERRORS
)
def set_expiry_alert_days(
    *,
    category_code: Annotated[Code, Path()],
    body: ExpiryDaysIn,
    connection: ConnDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ExpiryDaysOut:
    """A category's expiry alert bands ("15,30,60"); its subcategories inherit them."""
    bands = replaying(
        response,
        lambda: service.set_expiry_days(
            connection, category_code=category_code, days=body.days, audit=audit, claim=claim
        ),
        lambda _code: alerts.parse_days(body.days),
    )
    return ExpiryDaysOut(category_code=category_code, days=list(bands))


suggestions_router = APIRouter(
    prefix=below_api_root(REPLENISHMENT_SUGGESTIONS), tags=["replenishment"]
)


@suggestions_router.get("", dependencies=[Requires("replenishment.read")], responses=ERRORS)
def read_suggestions(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId, Query()],
    on: On = None,
) -> SuggestionsOut:
    """Suggested purchase orders for the site, grouped by supplier."""
    today = _today(on)
    groups = service.suggestions_by_supplier(
        connection, site_id=site_id, visible=principal.sites, today=today
    )
    return SuggestionsOut(
        site_id=site_id,
        on=today,
        suppliers=[SupplierGroupOut.model_validate(group) for group in groups],
    )


@suggestions_router.post(
    "/draft-po",
    dependencies=[Requires("purchase_order.create")],
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def make_draft_po(
    *,
    body: DraftPoIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> PurchaseOrderOut:
    """One supplier's suggestion at a site, as a draft purchase order."""
    po = replaying(
        response,
        lambda: service.make_draft_po(
            connection,
            site_id=body.site_id,
            supplier=body.supplier,
            today=_today(body.on),
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ),
        lambda po_id: purchasing.get_purchase_order(connection, po_id),
    )
    return answer(response, po, PurchaseOrderOut)


alerts_router = APIRouter(prefix=below_api_root(ALERTS), tags=["alerts"])


@alerts_router.get("", dependencies=[Requires("alert.read")], responses=ERRORS)
def read_alerts(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status: Annotated[AlertStatusText | None, Query()] = None,
    kind: Annotated[Code | None, Query()] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    owner: Annotated[Text | None, Query(max_length=64)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=alerts.MAX_PAGE)] = 100,
) -> AlertPage:
    """The inbox, oldest first: stock alerts and the exceptions of other modules."""
    found, next_after = alerts.list_alerts(
        connection,
        status=status,
        kind=kind,
        site_id=site_id,
        owner=owner,
        visible=principal.sites,
        after=after,
        limit=limit,
    )
    return AlertPage(
        alerts=[AlertOut.model_validate(each) for each in found], next_after=next_after
    )


@alerts_router.post("/evaluate-expiry", dependencies=[Requires("alert.manage")], responses=ERRORS)
def evaluate_expiry(
    *,
    body: EvaluateExpiryIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> ExpiryOutcomeOut:
    """Raise, move and clear expiry alerts as of a day (what a nightly job calls)."""
    today = _today(body.on)

    def run(key: IdempotencyClaim | None) -> alerts.ExpiryOutcome:
        return alerts.run_expiry_evaluation(
            connection,
            today=today,
            site_id=body.site_id,
            visible=principal.sites,
            audit=audit,
            claim=key,
        )

    # A retry runs again without the key: evaluating twice changes nothing the first did not.
    outcome = replaying(response, lambda: run(claim), lambda _id: run(None))
    return ExpiryOutcomeOut.model_validate(outcome)


@alerts_router.get("/{alert_id}", dependencies=[Requires("alert.read")], responses=ERRORS)
def read_alert(
    alert_id: AlertId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> AlertOut:
    return answer(
        response, alerts.get_alert(connection, alert_id, visible=principal.sites), AlertOut
    )


@alerts_router.post("/{alert_id}/assign", dependencies=[Requires("alert.manage")], responses=ERRORS)
def assign_alert(*, alert_id: AlertId, body: AssignIn, call: CallerDep) -> AlertOut:
    """Give the alert an owner (null: nobody)."""
    return call.run(
        lambda: alerts.assign_alert(
            call.connection,
            alert_id,
            owner=body.owner,
            visible=call.principal.sites,
            if_match=call.if_match,
            audit=call.audit,
            claim=call.claim,
        ),
        lambda connection, found: alerts.get_alert(
            connection, int(found), visible=call.principal.sites
        ),
        AlertOut,
    )


@alerts_router.post(
    "/{alert_id}/resolve", dependencies=[Requires("alert.manage")], responses=ERRORS
)
def resolve_alert(*, alert_id: AlertId, body: AlertResolveIn, call: CallerDep) -> AlertOut:
    """Close the alert with what was done (a mirrored exception is resolved with it)."""
    return call.run(
        lambda: alerts.resolve_alert(
            call.connection,
            alert_id,
            resolution=body.resolution,
            actor=call.principal.name,
            visible=call.principal.sites,
            if_match=call.if_match,
            audit=call.audit,
            claim=call.claim,
        ),
        lambda connection, found: alerts.get_alert(
            connection, int(found), visible=call.principal.sites
        ),
        AlertOut,
    )


negative_router = APIRouter(prefix=below_api_root(STOCK_NEGATIVE), tags=["stock"])


@negative_router.get("", dependencies=[Requires("stock.read")], responses=ERRORS)
def read_negative_stock(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    site_id: Annotated[SiteId | None, Query()] = None,
) -> list[NegativeOut]:
    """Balances below zero now and since when (at most 5000)."""
    return [
        NegativeOut.model_validate(each)
        for each in alerts.negative_stock(connection, site_id=site_id, visible=principal.sites)
    ]


routers = (params_router, expiry_router, suggestions_router, alerts_router, negative_router)
