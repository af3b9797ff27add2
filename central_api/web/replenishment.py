"""The console's replenishment pages: suggested purchase orders (with the button that
makes a supplier's suggestion a draft PO) and the alerts and exceptions inbox.

Each page calls the same service functions as the API routes, with the user's sites, so
the rules are the API's: ``replenishment.read`` to see suggestions,
``purchase_order.create`` for the button, ``alert.read`` / ``alert.manage`` for the inbox.
Every form carries its own idempotency key (a double click makes one PO) and the inbox's
forms the alert's version (``If-Match``: a change made meanwhile is a 412, not lost).
The menu entries are added here, so this module owns everything it shows.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import PrincipalDep
from central_api.errors import InvalidError
from central_api.services import alerts as alert_service
from central_api.services import replenishment as service
from central_api.services.idempotency import IdempotentReplay
from central_api.services.sites import list_sites
from central_api.web import i18n
from central_api.web.inventory import STOCK
from central_api.web.render import CONSOLE_ROOT, N_, NAVIGATION, NavEntry, gettext_for, render
from central_api.web.routes import form_claim, redirect
from jxc.contract import SiteId

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

SUGGESTIONS: Final = f"{CONSOLE_ROOT}/replenishment"
INBOX: Final = f"{CONSOLE_ROOT}/alerts"
STOCK_GROUP: Final = STOCK  # the inventory pages' group: one drop-down

_after_stock = max(
    (i for i, entry in enumerate(NAVIGATION) if entry.group == STOCK_GROUP),
    default=len(NAVIGATION) - 1,
)
NAVIGATION[_after_stock + 1 : _after_stock + 1] = [
    NavEntry(SUGGESTIONS, N_("Suggested orders"), "replenishment.read", group=STOCK_GROUP),
    NavEntry(INBOX, N_("Alerts and exceptions"), "alert.read", group=STOCK_GROUP),
]

KIND_LABELS: Final[dict[str, str]] = {
    "below_safety": N_("Below safety stock"),
    "below_reorder": N_("At reorder point"),
    "negative_stock": N_("Negative stock"),
    "expiry": N_("Near expiry"),
    "over_receipt": N_("Over-receipt"),
    "po_not_open": N_("PO not open"),
    "unknown_line": N_("Unknown line"),
    "wrong_site": N_("Wrong site"),
    "wrong_item": N_("Wrong item"),
    "unknown_unit": N_("Unknown unit"),
    "transfer_short": N_("Transfer arrived short"),
    "transfer_over": N_("Transfer arrived over"),
    "transfer_wrong_lot": N_("Transfer arrived with another lot"),
    "closed_period": N_("Dated in a closed period"),
    "short_pick": N_("Picked short at the site"),
    "return_over": N_("Customer return over authorised"),
    "return_unknown": N_("Return on no customer return line"),
}
"""The msgid of each alert kind the inbox shows (unknown kinds are shown as stored)."""

STATUS_LABELS: Final[dict[str, str]] = {
    "open": N_("Open"),
    "cleared": N_("Cleared"),
    "resolved": N_("Resolved"),
}
SOURCE_LABELS: Final[dict[str, str]] = {
    "set": N_("set for the site"),
    "last_po": N_("from the last PO"),
    "none": N_("none known"),
}


def _posted(posted: Any, name: str, limit: int = 200) -> str:
    return str(posted.get(name, "")).strip()[:limit]


def _sites(connection: ConnDep, principal: PrincipalDep) -> list[Any]:
    return [
        site
        for site in list_sites(connection, visible=principal.sites)
        if principal.sees_site(site.site_id)
    ]


@pages.get("/replenishment", dependencies=[Requires("replenishment.read")])
def suggestions_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    site_id: Annotated[SiteId | None, Query()] = None,
) -> HTMLResponse:
    """Today's suggestions for one site, a table per supplier with its button."""
    sites = _sites(connection, principal)
    chosen = site_id or (sites[0].site_id if sites else None)
    today = datetime.now(UTC).date()
    groups = (
        service.suggestions_by_supplier(
            connection, site_id=chosen, visible=principal.sites, today=today
        )
        if chosen
        else []
    )
    return render(
        request,
        "replenish_suggestions.html",
        {
            "sites": sites,
            "site_id": chosen,
            "today": today,
            "groups": groups,
            "can_order": principal.can("purchase_order.create"),
            "key": str(uuid.uuid4()),
            "source_labels": SOURCE_LABELS,
        },
        principal=principal,
    )


@pages.post("/replenishment/draft-po", dependencies=[Requires("purchase_order.create")])
async def draft_po_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    raw = await request.body()
    posted = await request.form()
    site_id, supplier = _posted(posted, "site_id", 32), _posted(posted, "supplier", 64)
    _ = gettext_for(i18n.language_of(request))
    try:
        today = date.fromisoformat(_posted(posted, "on", 10))
    except ValueError:
        raise InvalidError(_("The day the suggestion was made for is missing.")) from None
    claim = form_claim(request, principal, _posted(posted, "idempotency_key"), raw)
    try:
        po_id = service.make_draft_po(
            connection,
            site_id=site_id,
            supplier=supplier,
            today=today,
            actor=principal.name,
            visible=principal.sites,
            audit=audit,
            claim=claim,
        ).po_id
    except IdempotentReplay as replay:
        po_id = replay.resource_id
    return redirect(request, f"{CONSOLE_ROOT}/purchase-orders/view?id={po_id}")


@pages.get("/alerts", dependencies=[Requires("alert.read")])
def inbox_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "open",
    site_id: Annotated[SiteId | None, Query()] = None,
    kind: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    """Alerts and exceptions, open ones by default, with an owner and a resolution;
    ``kind`` narrows to one kind, or ``exceptions`` to the mirrored receiving and transfer
    exceptions (the dashboard's tiles link here so); a word it does not know is ignored."""
    chosen = status if status in STATUS_LABELS else ""
    exceptions = kind == "exceptions"
    chosen_kind = kind if kind in KIND_LABELS else ""
    found, _after = alert_service.list_alerts(
        connection,
        status=chosen or None,
        kind=chosen_kind or None,
        site_id=site_id,
        owner=None,
        visible=principal.sites,
        after=None,
        limit=alert_service.MAX_PAGE,
    )
    if exceptions:
        mirrored = {alert_service.PURCHASE_EXCEPTION, alert_service.TRANSFER_EXCEPTION}
        found = [alert for alert in found if alert.source in mirrored]
    return render(
        request,
        "alerts_inbox.html",
        {
            "alerts": found,
            "kind": "exceptions" if exceptions else chosen_kind,
            "status": chosen,
            "site_id": site_id or "",
            "sites": _sites(connection, principal),
            "can_manage": principal.can("alert.manage"),
            "key": str(uuid.uuid4()),
            "kind_labels": KIND_LABELS,
            "status_labels": STATUS_LABELS,
        },
        principal=principal,
    )


async def _command(request: Request) -> tuple[bytes, Any, str | None]:
    raw = await request.body()
    posted = await request.form()
    version = _posted(posted, "version", 20)
    return raw, posted, (f'"{version}"' if version.isdigit() else None)


@pages.post("/alerts/assign", dependencies=[Requires("alert.manage")])
async def assign_page(
    request: Request,
    alert_id: Annotated[int, Query(alias="id", ge=1, le=2**31 - 1)],
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    raw, posted, if_match = await _command(request)
    owner = _posted(posted, "owner", 64) or None
    with contextlib.suppress(IdempotentReplay):
        alert_service.assign_alert(
            connection,
            alert_id,
            owner=owner,
            visible=principal.sites,
            if_match=if_match,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        )
    return redirect(request, INBOX)


@pages.post("/alerts/resolve", dependencies=[Requires("alert.manage")])
async def resolve_page(
    request: Request,
    alert_id: Annotated[int, Query(alias="id", ge=1, le=2**31 - 1)],
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    raw, posted, if_match = await _command(request)
    resolution = _posted(posted, "resolution", 1000)
    _ = gettext_for(i18n.language_of(request))
    if not resolution:
        raise InvalidError(_("Say what was done."))
    with contextlib.suppress(IdempotentReplay):
        alert_service.resolve_alert(
            connection,
            alert_id,
            resolution=resolution,
            actor=principal.name,
            visible=principal.sites,
            if_match=if_match,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        )
    return redirect(request, INBOX)
