"""The console's webhook pages: subscriptions, their delivery log, replay by hand.

Thin over :mod:`central_api.services.webhooks`, the same functions the API routes call,
so the rules are the API's: ``webhook.manage`` for every page (admins), the secret shown
once on the page that answers the create and never again, every write audited by the
service without the secret. On top of the API, the pages refuse a user limited to some
sites: a subscription hears every site's events, so only someone who sees every site may
make or read one (the API leaves that to the role, which only admins hold).

Creates and replays carry the opened form's idempotency key (a double click makes one
subscription, one replay); edits and the on/off switch carry the subscription's version
(``If-Match``: a change made meanwhile is refused, not overwritten). The menu entry is
added here, so this module owns everything it shows.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, InvalidError, PreconditionFailedError
from central_api.services import webhooks as service
from central_api.services.idempotency import IdempotentReplay
from central_api.web import i18n
from central_api.web.render import CONSOLE_ROOT, N_, NAVIGATION, NavEntry, gettext_for, render
from central_api.web.routes import form_claim, redirect

pages = APIRouter(prefix=f"{CONSOLE_ROOT}/webhooks", include_in_schema=False)

ROOT: Final = f"{CONSOLE_ROOT}/webhooks"
MANAGE = Requires("webhook.manage")
PAGE: Final = 100
"""Deliveries shown per page of the log."""

NAVIGATION.append(NavEntry(ROOT, N_("Webhooks"), "webhook.manage"))

DELIVERY_LABELS: Final[dict[str, str]] = {
    "pending": N_("Pending"),
    "delivered": N_("Delivered"),
    "failed": N_("Failed"),
}

SubscriptionQuery = Annotated[
    str, Query(alias="id", pattern=r"^[A-Z]{1,4}[0-9]{1,10}$", max_length=16)
]
DeliveryQuery = Annotated[str, Query(alias="id", pattern=r"^[0-9a-f-]{36}$")]
_URL = re.compile(r"[!-~]{8,2048}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _chain_wide(principal: Principal) -> None:
    """A subscription hears every site: refuse a user who does not see every site."""
    if principal.sites is not None:
        raise ForbiddenError(
            "webhooks send every site's events; a user limited to some sites may not manage them"
        )


def _posted(posted: Any, name: str, limit: int) -> str:
    return str(posted.get(name, "")).strip()[:limit]


def _events(text: str) -> list[str]:
    """The events field: one or more patterns split by spaces, commas or new lines."""
    return [part for part in re.split(r"[\s,，]+", text) if part]


def _form_values(posted: Any) -> dict[str, Any]:
    return {
        "url": _posted(posted, "url", 4096),
        "events": _posted(posted, "events", 5000),
        "description": _posted(posted, "description", 400),
        "financial": posted.get("financial") is not None,
    }


def _checked(form: dict[str, Any], gettext: Any) -> dict[str, str]:
    """What the page can say before the service does: lengths and characters (the API's
    schema checks these), each next to its field."""
    errors: dict[str, str] = {}
    if not _URL.fullmatch(form["url"]):
        errors["url"] = gettext(
            "Give the receiver's address, http:// or https://, without spaces (8 to 2048 "
            "characters)."
        )
    events = _events(form["events"])
    if not events:
        errors["events"] = gettext("Name at least one event, or * for every event.")
    if len(form["description"]) > 200 or _CONTROL.search(form["description"]):
        errors["description"] = gettext("At most 200 characters on one line.")
    return errors


def _service_error(message: str) -> tuple[str, str]:
    """The field a service refusal names (``url: ...``, ``events[0]: ...``)."""
    head = message.split(":", 1)[0]
    field = re.sub(r"\[\d+\]$", "", head)
    return (field if field in {"url", "events", "description"} else "form"), message


def _form_page(
    request: Request,
    principal: Principal,
    *,
    form: dict[str, Any],
    errors: dict[str, str],
    key: str,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "webhook_form.html",
        {
            "form": form,
            "errors": errors,
            "key": key,
            "may_send_money": principal.financial,
            "known_events": sorted(service.EVENT_RESOURCES),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("", dependencies=[MANAGE])
def webhooks_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    """Every subscription with its target, events and whether it is on."""
    _chain_wide(principal)
    return render(
        request,
        "webhooks.html",
        {"subscriptions": service.list_subscriptions(connection), "root": ROOT},
        principal=principal,
    )


@pages.get("/new", dependencies=[MANAGE])
def new_webhook_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    _chain_wide(principal)
    form = {"url": "", "events": "*", "description": "", "financial": False}
    return _form_page(request, principal, form=form, errors={}, key=str(uuid.uuid4()))


@pages.post("/new", dependencies=[MANAGE])
async def create_webhook_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    settings: SettingsDep,
) -> Response:
    """Make the subscription and show its secret on this one answer; a repeated submit
    of the same form goes to the subscription's page (the secret is not shown twice)."""
    _chain_wide(principal)
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form = _form_values(posted)
    key = _posted(posted, "idempotency_key", 64)
    if form["financial"] and not principal.financial:
        raise ForbiddenError("financial: your roles do not show amounts, so you may not send them")
    errors = _checked(form, _)
    if not errors:
        try:
            made = service.create_subscription(
                connection,
                url=form["url"],
                events=_events(form["events"]),
                description=form["description"] or None,
                financial=form["financial"],
                actor=principal.name,
                audit=audit,
                claim=form_claim(request, principal, key, raw),
                allow_private=settings.webhook_allow_private,
            )
        except IdempotentReplay as replay:
            return redirect(request, _view_url(replay.resource_id))
        except InvalidError as refused:
            field, message = _service_error(str(refused))
            errors[field] = message
        else:
            return render(
                request,
                "webhook_created.html",
                {"subscription": made, "root": ROOT, "rotated": False},
                principal=principal,
                status_code=201,
            )
    return _form_page(request, principal, form=form, errors=errors, key=key, status_code=422)


def _view_url(subscription_id: str, **more: str) -> str:
    return f"{ROOT}/view?{urlencode({'id': subscription_id, **more})}"


def _view(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    subscription_id: str,
    *,
    status: str = "",
    after: int | None = None,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    refusal: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    found = service.get_subscription(connection, subscription_id)
    deliveries, next_after = service.list_deliveries(
        connection,
        subscription_id,
        status=status or None,
        after=after,
        limit=PAGE,
    )
    return render(
        request,
        "webhook.html",
        {
            "subscription": found,
            "form": form
            or {
                "url": found.url,
                "events": " ".join(found.events),
                "description": found.description or "",
                "financial": found.financial,
            },
            "errors": errors or {},
            "refusal": refusal,
            "deliveries": deliveries,
            "status": status,
            "next_url": (
                _view_url(subscription_id, status=status, after=str(next_after))
                if next_after is not None
                else ""
            ),
            "delivery_labels": DELIVERY_LABELS,
            "may_send_money": principal.financial,
            "known_events": sorted(service.EVENT_RESOURCES),
            "key": str(uuid.uuid4()),
            "root": ROOT,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/view", dependencies=[MANAGE])
def webhook_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    subscription_id: SubscriptionQuery,
    *,
    status: Annotated[str, Query(max_length=16)] = "",
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> HTMLResponse:
    """One subscription: its settings to edit, the switch, and its delivery log."""
    _chain_wide(principal)
    chosen = status if status in DELIVERY_LABELS else ""
    return _view(request, connection, principal, subscription_id, status=chosen, after=after)


def _if_match(posted: Any) -> str | None:
    version = _posted(posted, "version", 12)
    return f'"{version}"' if version.isdigit() else None


@pages.post("/edit", dependencies=[MANAGE])
async def edit_webhook_page(
    request: Request,
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    settings: SettingsDep,
    subscription_id: SubscriptionQuery,
) -> Response:
    """Save the address, events, description and whether amounts are sent."""
    _chain_wide(principal)
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form = _form_values(posted)
    if form["financial"] and not principal.financial:
        raise ForbiddenError("financial: your roles do not show amounts, so you may not send them")
    errors = _checked(form, _)
    if not errors:
        try:
            service.update_subscription(
                connection,
                subscription_id,
                service.SubscriptionChange(
                    url=form["url"],
                    events=_events(form["events"]),
                    description=form["description"],
                    # a role without amounts is not offered the box: leave it as it is
                    financial=form["financial"] if principal.financial else None,
                ),
                audit=audit,
                if_match=_if_match(posted),
                allow_private=settings.webhook_allow_private,
            )
        except InvalidError as refused:
            field, message = _service_error(str(refused))
            errors[field] = message
        except PreconditionFailedError:
            return _view(
                request,
                connection,
                principal,
                subscription_id,
                refusal=_("It was changed meanwhile; here is what is saved now."),
                status_code=412,
            )
        else:
            return redirect(request, _view_url(subscription_id))
    return _view(
        request,
        connection,
        principal,
        subscription_id,
        form=form,
        errors=errors,
        status_code=422,
    )


@pages.post("/active", dependencies=[MANAGE])
async def switch_webhook_page(
    request: Request,
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    settings: SettingsDep,
    subscription_id: SubscriptionQuery,
) -> Response:
    """Turn the subscription off (its pending deliveries wait) or on again (it hears the
    events from now on)."""
    _chain_wide(principal)
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    try:
        service.update_subscription(
            connection,
            subscription_id,
            service.SubscriptionChange(active=_posted(posted, "active", 5) == "true"),
            audit=audit,
            if_match=_if_match(posted),
            allow_private=settings.webhook_allow_private,
        )
    except PreconditionFailedError:
        return _view(
            request,
            connection,
            principal,
            subscription_id,
            refusal=_("It was changed meanwhile; here is what is saved now."),
            status_code=412,
        )
    return redirect(request, _view_url(subscription_id))


@pages.post("/replay", dependencies=[MANAGE])
async def replay_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    delivery_id: DeliveryQuery,
) -> Response:
    """Send one delivery again, whatever its state: pending and due now, attempts anew."""
    _chain_wide(principal)
    raw = await request.body()
    posted = await request.form()
    claim = form_claim(request, principal, _posted(posted, "idempotency_key", 64), raw)
    try:
        found = service.replay_delivery(connection, delivery_id, audit=audit, claim=claim)
        subscription_id = found.subscription_id
    except IdempotentReplay:
        subscription_id = service.get_delivery(connection, delivery_id).subscription_id
    return redirect(request, _view_url(subscription_id))


@pages.post("/rotate", dependencies=[MANAGE])
async def rotate_secret_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    subscription_id: SubscriptionQuery,
) -> Response:
    """A new signing secret, shown on this one answer (the API's ``rotate-secret``): the
    old one stops signing at once. A repeated submit of the same form (a double click, a
    lost answer) goes to the subscription's page and does not rotate again, nor show the
    secret twice."""
    _chain_wide(principal)
    raw = await request.body()
    posted = await request.form()
    claim = form_claim(request, principal, _posted(posted, "idempotency_key", 64), raw)
    try:
        rotated = service.rotate_secret(connection, subscription_id, audit=audit, claim=claim)
    except IdempotentReplay:
        return redirect(request, _view_url(subscription_id))
    return render(
        request,
        "webhook_created.html",
        {"subscription": rotated, "root": ROOT, "rotated": True},
        principal=principal,
    )
