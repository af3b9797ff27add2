"""The console's pages for partners, sites and their location trees.

Thin, as the item pages are: each route declares the rule of the API route it mirrors
(``partners.read``/``partners.write``, ``locations.read``/``locations.write``), checks
the site scope where the API does (``principal.sees_site``), validates with the API's own
models and writes through the same services with the request's audit context, so the
audit entry, the all-or-nothing transaction and the idempotency key work as for the API.
A partner's credit limit (financial) is neither shown nor read for a role without the
financial field group: the handler leaves it out of what the template gets.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, TypeAdapter, ValidationError

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import InvalidError, SiteOutOfScopeError
from central_api.schemas.master import (
    LocationCreate,
    LocationIn,
    PartnerCreate,
    PartnerIn,
    SiteIn,
)
from central_api.services import partners as partner_service
from central_api.services import sites as site_service
from central_api.services.idempotency import IdempotentReplay
from central_api.services.reference import list_entries
from central_api.web import i18n
from central_api.web.forms import service_error, service_message, validate
from central_api.web.render import CONSOLE_ROOT, gettext_for, render
from central_api.web.routes import form_claim, redirect
from jxc.contract import Code, SiteId
from jxc.feed import LocationData

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)
_CODE: Final = TypeAdapter(Code)

READ_PARTNERS = Requires("partners.read")
WRITE_PARTNERS = Requires("partners.write")
READ_LOCATIONS = Requires("locations.read")
WRITE_LOCATIONS = Requires("locations.write")

PARTNERS: Final = f"{CONSOLE_ROOT}/partners"
SITES: Final = f"{CONSOLE_ROOT}/sites"
PAGE: Final = 50
MAX_TREE: Final = 5000
"""Locations shown in one site's tree (a large warehouse has a few thousand bins)."""

CodeQuery = Annotated[Code, Query(alias="code")]
SiteQuery = Annotated[Code, Query(alias="site")]


def url(base: str, **query: str) -> str:
    return f"{base}?{urlencode(query)}"


def _posted_text(posted: Any, name: str) -> str:
    return str(posted.get(name, "")).strip()


def _ticked(posted: Any, name: str) -> bool:
    return str(posted.get(name, "")) in ("on", "true", "1")


# --- partners ---------------------------------------------------------------------------

_PARTNER_TEXT: Final = (
    "code",
    "name",
    "name_en",
    "tax_id",
    "contact",
    "phone",
    "email",
    "address",
    "payment_terms",
    "lead_time_days",
    "credit_limit",
    "price_list",
)


def _partner_view(partner: partner_service.Partner, principal: Principal) -> dict[str, Any]:
    """A partner as a page may show it: no credit limit for a role without the group."""
    view = asdict(partner)
    if not principal.financial:
        view.pop("credit_limit", None)
    return view


@pages.get("/partners", dependencies=[READ_PARTNERS])
def partners_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    q: Annotated[str, Query(max_length=200)] = "",
    role: Annotated[str, Query(max_length=16)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> HTMLResponse:
    """Suppliers and customers: search by code prefix or name, filter by role, paged."""
    query = "".join(c for c in q if c.isprintable()).strip()
    chosen_role = role if role in ("supplier", "customer") else ""
    found, next_after = partner_service.list_partners(
        connection,
        after=after or None,
        limit=PAGE,
        filters=partner_service.PartnerFilter(role=chosen_role or None, q=query or None),
    )
    more = None
    if next_after is not None:
        more = url(PARTNERS, q=query, role=chosen_role, after=next_after)
    return render(
        request,
        "partners.html",
        {
            "partners": [_partner_view(partner, principal) for partner in found],
            "q": query,
            "role": chosen_role,
            "more": more,
            "url": url,
        },
        principal=principal,
    )


@pages.get("/partners/view", dependencies=[READ_PARTNERS])
def partner_page(
    request: Request, code: CodeQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    partner = partner_service.get_partner(connection, code)
    return render(
        request,
        "partner.html",
        {"partner": _partner_view(partner, principal), "url": url},
        principal=principal,
    )


@pages.get("/partners/new", dependencies=[WRITE_PARTNERS])
def new_partner_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> Response:
    form = {"is_supplier": True, "active": True, "idempotency_key": str(uuid.uuid4())}
    return _partner_form(request, connection, principal, form, {}, creating=True)


@pages.get("/partners/edit", dependencies=[WRITE_PARTNERS])
def edit_partner_page(
    request: Request, code: CodeQuery, connection: ConnDep, principal: PrincipalDep
) -> Response:
    partner = partner_service.get_partner(connection, code)
    form = {
        name: ("" if value is None else format(value, "f") if name == "credit_limit" else value)
        for name, value in _partner_view(partner, principal).items()
    }
    form["fingerprint"] = partner.updated_at.isoformat()
    return _partner_form(request, connection, principal, form, {}, creating=False)


def _partner_form(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    creating: bool,
    status_code: int = 200,
) -> HTMLResponse:
    code = str(form.get("code", ""))
    return render(
        request,
        "partner_form.html",
        {
            "form": form,
            "errors": errors,
            "creating": creating,
            "financial": principal.financial,
            "payment_terms": list_entries(connection, "payment_terms", active=True),
            "action": f"{PARTNERS}/new" if creating else url(f"{PARTNERS}/edit", code=code),
            "cancel": PARTNERS if creating else url(f"{PARTNERS}/view", code=code),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.post("/partners/new", dependencies=[WRITE_PARTNERS])
async def create_partner(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save_partner(request, connection, principal, audit, code=None)


@pages.post("/partners/edit", dependencies=[WRITE_PARTNERS])
async def update_partner(
    request: Request,
    code: CodeQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    return await _save_partner(request, connection, principal, audit, code=code)


async def _save_partner(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    audit: AuditDep,
    *,
    code: str | None,
) -> Response:
    """Check the whole form with the API's model, then one call of the partner service
    (its transaction holds the row and the audit entry): a refused form saves nothing."""
    creating = code is None
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {name: _posted_text(posted, name) for name in _PARTNER_TEXT}
    for flag in ("is_supplier", "is_customer", "active"):
        form[flag] = _ticked(posted, flag)
    form["idempotency_key"] = _posted_text(posted, "idempotency_key")[:200]
    form["fingerprint"] = _posted_text(posted, "fingerprint")[:100]
    if code is not None:
        form["code"] = code
    if not principal.financial:
        form.pop("credit_limit")
    body = {
        name: (value or None)
        if name in ("payment_terms", "lead_time_days", "credit_limit", "price_list")
        else value
        for name, value in form.items()
        if name not in ("idempotency_key", "fingerprint")
    }
    if not creating:
        body.pop("code")
    checked, errors = validate(PartnerCreate if creating else PartnerIn, body, _)
    if not errors and code is not None:
        errors = _partner_changed(connection, code, form["fingerprint"], _)
    if not errors:
        values = partner_service.PartnerFields(**checked.model_dump(exclude={"code"}))
        try:
            partner, _created = partner_service.save_partner(
                connection,
                code=str(checked.code if code is None else code),
                values=values,
                audit=audit,
                keep_credit_limit=not principal.financial,
                create_only=creating,
                claim=form_claim(request, principal, form["idempotency_key"], raw)
                if creating
                else None,
            )
        except IdempotentReplay as replay:
            return redirect(request, url(f"{PARTNERS}/view", code=replay.resource_id))
        except partner_service.PartnerExistsError:
            errors["code"] = _("A record with this code exists already.")
        except InvalidError as refused:
            where, reason = service_error(str(refused))
            errors[where] = service_message(reason, _)
        else:
            return redirect(request, url(f"{PARTNERS}/view", code=partner.code))
    return _partner_form(
        request, connection, principal, form, errors, creating=creating, status_code=422
    )


def _partner_changed(connection: ConnDep, code: str, fingerprint: str, _: Any) -> dict[str, str]:
    """An edited partner must still exist and must not have been saved meanwhile."""
    try:
        stored = partner_service.get_partner(connection, code)
    except partner_service.UnknownPartnerError:
        return {"form": _("This record no longer exists.")}
    if fingerprint and fingerprint != stored.updated_at.isoformat():
        return {
            "form": _(
                "Someone saved this record while you were editing it. Open it again to "
                "see their change; nothing of yours was saved."
            )
        }
    return {}


# --- sites and locations ----------------------------------------------------------------


def _is_code(text: str) -> bool:
    try:
        _CODE.validate_python(text)
    except ValidationError:
        return False
    return True


def _in_scope(principal: Principal, site_id: str) -> None:
    if not principal.sees_site(site_id):
        raise SiteOutOfScopeError(who=principal.label, site_id=site_id)


@pages.get("/sites", dependencies=[READ_LOCATIONS])
def sites_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    """The sites the user sees (a user limited to sites: only theirs)."""
    shown = [
        site
        for site in site_service.list_sites(connection, visible=principal.sites)
        if principal.sees_site(site.site_id)
    ]
    return render(request, "sites.html", {"sites": shown, "url": url}, principal=principal)


@pages.get("/sites/view", dependencies=[READ_LOCATIONS])
def site_page(
    request: Request, site: SiteQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A site and its location tree (zone → aisle → bin), each node with its kind."""
    _in_scope(principal, site)
    record = site_service.get_site(connection, site)
    locations: list[site_service.Location] = []
    after: str | None = None
    while len(locations) < MAX_TREE:
        found, after = site_service.list_locations(
            connection, site_id=site, after=after, limit=1000
        )
        locations.extend(found)
        if after is None:
            break
    children: dict[str | None, list[site_service.Location]] = {}
    for location in locations:
        children.setdefault(location.parent, []).append(location)
    return render(
        request,
        "site.html",
        {
            "site": record,
            "children": children,
            "count": len(locations),
            "truncated": after is not None,
            "can_write": principal.can("locations.write"),
            "url": url,
        },
        principal=principal,
    )


@pages.get("/sites/new", dependencies=[WRITE_LOCATIONS])
def new_site_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    form = {"kind": "warehouse", "active": True}
    return render(request, "site_form.html", {"form": form, "errors": {}}, principal=principal)


@pages.post("/sites/new", dependencies=[WRITE_LOCATIONS])
async def create_site(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    """A new site's master record (the API's PUT, refusing an id that exists: a form
    called "new site" must not replace one)."""
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {
        name: _posted_text(posted, name) for name in ("site_id", "kind", "name", "name_en")
    }
    form["active"] = _ticked(posted, "active")
    checked, errors = validate(SiteIn, {k: v for k, v in form.items() if k != "site_id"}, _)
    site_id = form["site_id"]
    id_errors = validate(_SiteId, {"site_id": site_id}, _)[1]
    errors.update(id_errors)
    if not errors and not principal.sees_site(site_id):
        errors["site_id"] = _("You may only add your own sites.")
    if not errors:
        try:
            site_service.get_site(connection, site_id)
        except site_service.UnknownSiteMasterError:
            site_service.put_site(
                connection,
                site_id=site_id,
                kind=checked.kind,
                name=checked.name,
                name_en=checked.name_en,
                active=checked.active,
                audit=audit,
            )
            return redirect(request, url(f"{SITES}/view", site=site_id))
        errors["site_id"] = _("A record with this code exists already.")
    return render(
        request,
        "site_form.html",
        {"form": form, "errors": errors},
        principal=principal,
        status_code=422,
    )


@pages.get("/sites/edit", dependencies=[WRITE_LOCATIONS])
def edit_site_page(
    request: Request, site: SiteQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    """A site's kind, names and whether it is active (its id is the edge's: fixed)."""
    _in_scope(principal, site)
    record = site_service.get_site(connection, site)
    form = {
        "site_id": record.site_id,
        "kind": record.kind,
        "name": record.name,
        "name_en": record.name_en,
        "active": record.active,
    }
    return render(
        request,
        "site_form.html",
        {"form": form, "errors": {}, "editing": True},
        principal=principal,
    )


@pages.post("/sites/edit", dependencies=[WRITE_LOCATIONS])
async def update_site(
    request: Request,
    site: SiteQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    """The API's PUT of an existing site (audited by the service); one of another site
    than the user's is a 403, as the page."""
    _in_scope(principal, site)
    site_service.get_site(connection, site)  # 404 for no such site
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {
        name: _posted_text(posted, name) for name in ("kind", "name", "name_en")
    }
    form["active"] = _ticked(posted, "active")
    checked, errors = validate(SiteIn, form, _)
    form["site_id"] = site
    if not errors:
        site_service.put_site(
            connection,
            site_id=site,
            kind=checked.kind,
            name=checked.name,
            name_en=checked.name_en,
            active=checked.active,
            audit=audit,
        )
        return redirect(request, url(f"{SITES}/view", site=site))
    return render(
        request,
        "site_form.html",
        {"form": form, "errors": errors, "editing": True},
        principal=principal,
        status_code=422,
    )


class _SiteId(BaseModel):
    """The site id as the API's path takes it."""

    site_id: SiteId


@pages.get("/sites/locations/new", dependencies=[WRITE_LOCATIONS])
def new_location_page(
    request: Request,
    site: SiteQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    parent: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    """The new-location form; ``parent`` (from a tree node's "+") picks the level below."""
    _in_scope(principal, site)
    record = site_service.get_site(connection, site)
    level = "zone"
    if parent and not _is_code(parent):
        parent = ""  # no location has such a code: the form starts at a zone
    if parent:
        above = site_service.get_location(connection, site, parent)
        level = {"zone": "aisle", "aisle": "bin"}.get(above.level, "bin")
    form = {
        "parent": parent or "",
        "level": level,
        "kind": "storage",
        "active": True,
        "idempotency_key": str(uuid.uuid4()),
    }
    return _location_form(
        request, connection=connection, principal=principal, site=record, form=form, errors={}
    )


def _location_form(
    request: Request,
    *,
    connection: ConnDep,
    principal: Principal,
    site: site_service.Site,
    form: dict[str, Any],
    errors: dict[str, str],
    editing: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    """The location form: a new one's, or with ``editing`` (its code) an existing one's,
    whose code is fixed (the ledger and the edges name it)."""
    parents, _after = site_service.list_locations(
        connection,
        site_id=site.site_id,
        after=None,
        limit=1000,
    )
    return render(
        request,
        "location_form.html",
        {
            "site": site,
            "form": form,
            "errors": errors,
            "parents": [p for p in parents if p.level in ("zone", "aisle") and p.code != editing],
            "levels": ("zone", "aisle", "bin"),
            "kinds": site_service.LOCATION_KINDS,
            "editing": editing,
            "action": url(f"{SITES}/locations/edit", site=site.site_id, code=editing)
            if editing
            else url(f"{SITES}/locations/new", site=site.site_id),
            "cancel": url(f"{SITES}/view", site=site.site_id),
        },
        principal=principal,
        status_code=status_code,
    )


@pages.post("/sites/locations/new", dependencies=[WRITE_LOCATIONS])
async def create_location(
    request: Request,
    site: SiteQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    """Add a location (the API's POST: a code the site has is refused; one per opened
    form, by its key)."""
    return await _save_location(
        request, site=site, connection=connection, principal=principal, audit=audit
    )


async def _save_location(
    request: Request,
    *,
    site: str,
    connection: ConnDep,
    principal: Principal,
    audit: AuditDep,
    editing: str = "",
) -> Response:
    """Check the location form with the API's model and save it through the service (one
    transaction with its audit entry); a new one's with its form's key, an edited one's
    (``editing``: its code, which the form cannot change) as the API's PUT."""
    _in_scope(principal, site)
    record = site_service.get_site(connection, site)
    if editing:
        site_service.get_location(connection, site, editing)  # 404 for no such location
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {
        name: _posted_text(posted, name) for name in ("code", "parent", "level", "kind", "name")
    }
    form["active"] = _ticked(posted, "active")
    key = _posted_text(posted, "idempotency_key")[:200]
    if editing:
        form["code"] = editing
    else:
        form["idempotency_key"] = key
    body = {k: v for k, v in form.items() if k not in ("idempotency_key", "code")}
    body["parent"] = body["parent"] or None
    model: type[BaseModel] = LocationIn
    if not editing:
        body["code"], model = form["code"], LocationCreate
    checked, errors = validate(model, body, _)
    if not errors:
        try:
            site_service.put_location(
                connection,
                site_id=site,
                data=LocationData(**{**checked.model_dump(), "code": form["code"]}),
                audit=audit,
                create_only=not editing,
                claim=None if editing else form_claim(request, principal, key, raw),
            )
        except IdempotentReplay:
            return redirect(request, url(f"{SITES}/view", site=site))
        except site_service.LocationExistsError:
            errors["code"] = _("A record with this code exists already.")
        except InvalidError as refused:
            where, reason = service_error(str(refused))
            errors[where] = service_message(reason, _)
        else:
            return redirect(request, url(f"{SITES}/view", site=site))
    return _location_form(
        request,
        connection=connection,
        principal=principal,
        site=record,
        form=form,
        errors=errors,
        editing=editing,
        status_code=422,
    )


@pages.get("/sites/locations/edit", dependencies=[WRITE_LOCATIONS])
def edit_location_page(
    request: Request,
    site: SiteQuery,
    code: CodeQuery,
    connection: ConnDep,
    principal: PrincipalDep,
) -> HTMLResponse:
    """An existing location's parent, level, kind, name and whether it is active."""
    _in_scope(principal, site)
    record = site_service.get_site(connection, site)
    stored = site_service.get_location(connection, site, code)
    form = {
        "code": stored.code,
        "parent": stored.parent or "",
        "level": stored.level,
        "kind": stored.kind,
        "name": stored.name,
        "active": stored.active,
    }
    return _location_form(
        request,
        connection=connection,
        principal=principal,
        site=record,
        form=form,
        errors={},
        editing=code,
    )


@pages.post("/sites/locations/edit", dependencies=[WRITE_LOCATIONS])
async def update_location(
    request: Request,
    *,
    site: SiteQuery,
    code: CodeQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    """The API's PUT of an existing location (audited ``location.update``; the tree rules
    are the service's: a bin under a zone, or a parent below the location itself, is
    refused next to the parent). A PUT is its own repeat, so it needs no key."""
    return await _save_location(
        request, site=site, connection=connection, principal=principal, audit=audit, editing=code
    )
