"""Master data around items: categories, sites with locations and per-item levels,
partners, and the reference lists (reason codes, payment terms, tax rates, units, label
templates).

Rules: reading categories and levels takes ``items.read``, writing ``items.write``;
sites and locations ``locations.read`` / ``locations.write``; partners
``partners.read`` / ``partners.write`` (the credit limit is financial); reference lists
``reference.read`` / ``reference.write``. Whatever is per site (a site, its locations,
its levels) is refused for a user limited to other sites.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.idempotency import IdempotencyDep, replayed
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import PermissionDeniedError, SiteOutOfScopeError
from central_api.schemas.items import LevelsIn, LevelsOut, LevelsPage
from central_api.schemas.master import (
    CategoryIn,
    CategoryOut,
    LocationCreate,
    LocationIn,
    LocationOut,
    LocationPage,
    PartnerCreate,
    PartnerIn,
    PartnerOut,
    PartnerPage,
    ShortCode,
    SiteIn,
    SiteOut,
)
from central_api.services import categories as category_service
from central_api.services import items as item_service
from central_api.services import partners as partner_service
from central_api.services import sites as site_service
from central_api.services.idempotency import IdempotentReplay
from jxc.contract import Code, SiteId, Text
from jxc.feed import LocationData, LocationKind, LocationLevel
from jxc.paths import (
    CATEGORIES,
    PARTNERS,
    SITES,
    below_api_root,
)

SitePath = Annotated[SiteId, Path(description="the site's id")]
ItemCode = Annotated[Code, Path(description="the item's code; a / in it is sent as %2F")]
LocationCode = Annotated[Code, Path(description="the location's code; a / is sent as %2F")]
After = Annotated[
    Text | None,
    Query(max_length=64, description="the next_after of the previous page; omit for the first"),
]
Limit = Annotated[int, Query(ge=1, le=1000)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Outside the caller's sites, or a financial field without the group."},
    404: {"description": "No such record; detail names it."},
    409: {"description": "Clashes with what central holds; detail says what to do."},
    422: {"description": "The body is invalid; message names each field."},
}


def _in_scope(principal: Principal, site_id: str) -> None:
    if not principal.sees_site(site_id):
        raise SiteOutOfScopeError(who=principal.label, site_id=site_id)


# --- categories -------------------------------------------------------------------------

categories_router = APIRouter(prefix=below_api_root(CATEGORIES), tags=["categories"])


@categories_router.get("", dependencies=[Requires("items.read")])
def read_categories(
    connection: ConnDep,
    parent: Annotated[ShortCode | None, Query(description="only those right below")] = None,
) -> list[CategoryOut]:
    """The category tree, by code (each names its parent)."""
    found = category_service.list_categories(connection, parent=parent)
    return [CategoryOut.model_validate(category) for category in found]


@categories_router.get("/{code}", dependencies=[Requires("items.read")], responses=_ERRORS)
def read_category(code: ShortCode, connection: ConnDep) -> CategoryOut:
    return CategoryOut.model_validate(category_service.get_category(connection, code))


@categories_router.put("/{code}", dependencies=[Requires("items.write")], responses=_ERRORS)
def write_category(
    code: ShortCode, body: CategoryIn, connection: ConnDep, audit: AuditDep
) -> CategoryOut:
    """Create or replace a category and its coding rule."""
    category, _created = category_service.put_category(
        connection,
        code=code,
        parent=body.parent,
        name=body.name,
        name_en=body.name_en,
        code_prefix=body.code_prefix,
        code_digits=body.code_digits,
        code_pattern=body.code_pattern,
        audit=audit,
    )
    return CategoryOut.model_validate(category)


@categories_router.delete(
    "/{code}",
    dependencies=[Requires("items.write")],
    responses=_ERRORS,
    status_code=status.HTTP_204_NO_CONTENT,
)
def remove_category(code: ShortCode, connection: ConnDep, audit: AuditDep) -> None:
    """Delete a category without items or categories below it."""
    category_service.delete_category(connection, code=code, audit=audit)


# --- sites, locations and per-site item levels --------------------------------------------

sites_router = APIRouter(prefix=below_api_root(SITES), tags=["sites"])


@sites_router.get("", dependencies=[Requires("locations.read")])
def read_sites(connection: ConnDep, principal: PrincipalDep) -> list[SiteOut]:
    """The sites the caller may see, by id."""
    found = site_service.list_sites(connection, visible=principal.sites)
    return [SiteOut.model_validate(site) for site in found]


# Item levels and locations are declared before the bare /{site_id} routes, and each
# item path before its catch-all, so that a code containing "/" reaches the right route.


@sites_router.get("/{site_id}/item-levels", dependencies=[Requires("items.read")])
def read_levels(
    site_id: SitePath,
    connection: ConnDep,
    principal: PrincipalDep,
    after: After = None,
    limit: Limit = 100,
) -> LevelsPage:
    """Safety stock, reorder point and reorder quantity of the site's items."""
    _in_scope(principal, site_id)
    found, next_after = item_service.list_site_levels(
        connection=connection, site_id=site_id, after=after or None, limit=limit
    )
    return LevelsPage(
        levels=[LevelsOut.model_validate(level) for level in found], next_after=next_after
    )


@sites_router.get(
    "/{site_id}/item-levels/{item_code:path}",
    dependencies=[Requires("items.read")],
    responses=_ERRORS,
)
def read_item_levels(
    site_id: SitePath, item_code: ItemCode, connection: ConnDep, principal: PrincipalDep
) -> LevelsOut:
    _in_scope(principal, site_id)
    found = item_service.get_site_levels(
        connection=connection, site_id=site_id, item_code=item_code
    )
    return LevelsOut.model_validate(found)


@sites_router.put(
    "/{site_id}/item-levels/{item_code:path}",
    dependencies=[Requires("items.write")],
    responses=_ERRORS,
)
def write_item_levels(
    *,
    site_id: SitePath,
    item_code: ItemCode,
    body: LevelsIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> LevelsOut:
    """Set the item's levels at the site (sent to that site's edge)."""
    _in_scope(principal, site_id)
    levels = item_service.put_site_levels(
        connection=connection,
        site_id=site_id,
        item_code=item_code,
        safety_stock=body.safety_stock,
        reorder_point=body.reorder_point,
        reorder_qty=body.reorder_qty,
        audit=audit,
    )
    return LevelsOut.model_validate(levels)


@sites_router.delete(
    "/{site_id}/item-levels/{item_code:path}",
    dependencies=[Requires("items.write")],
    responses=_ERRORS,
    status_code=status.HTTP_204_NO_CONTENT,
)
def remove_item_levels(
    site_id: SitePath,
    item_code: ItemCode,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> None:
    _in_scope(principal, site_id)
    item_service.delete_site_levels(
        connection=connection, site_id=site_id, item_code=item_code, audit=audit
    )


@sites_router.get(
    "/{site_id}/locations", dependencies=[Requires("locations.read")], responses=_ERRORS
)
def read_locations(
    site_id: SitePath,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    after: After = None,
    limit: Limit = 100,
    parent: Annotated[Code | None, Query(description="only those right below")] = None,
    level: Annotated[LocationLevel | None, Query()] = None,
    kind: Annotated[LocationKind | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
) -> LocationPage:
    """The site's locations in code order, a page at a time."""
    _in_scope(principal, site_id)
    found, next_after = site_service.list_locations(
        connection,
        site_id=site_id,
        after=after or None,
        limit=limit,
        filters=site_service.LocationFilter(parent=parent, level=level, kind=kind, active=active),
    )
    return LocationPage(
        locations=[LocationOut.model_validate(location) for location in found],
        next_after=next_after,
    )


@sites_router.post(
    "/{site_id}/locations",
    dependencies=[Requires("locations.write")],
    responses=_ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_location(
    *,
    site_id: SitePath,
    body: LocationCreate,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> LocationOut:
    """Add a location; a code the site has already is refused (409)."""
    _in_scope(principal, site_id)
    try:
        location, _created = site_service.put_location(
            connection,
            site_id=site_id,
            data=_location_data(body.code, body),
            audit=audit,
            create_only=True,
            claim=claim,
        )
    except IdempotentReplay:
        replayed(response)
        location = site_service.get_location(connection, site_id, body.code)
    return LocationOut.model_validate(location)


@sites_router.get(
    "/{site_id}/locations/{code:path}",
    dependencies=[Requires("locations.read")],
    responses=_ERRORS,
)
def read_location(
    site_id: SitePath, code: LocationCode, connection: ConnDep, principal: PrincipalDep
) -> LocationOut:
    _in_scope(principal, site_id)
    return LocationOut.model_validate(site_service.get_location(connection, site_id, code))


@sites_router.put(
    "/{site_id}/locations/{code:path}",
    dependencies=[Requires("locations.write")],
    responses=_ERRORS,
)
def write_location(
    *,
    site_id: SitePath,
    code: LocationCode,
    body: LocationIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> LocationOut:
    """Create or replace one location of the site (sent to that site's edge)."""
    _in_scope(principal, site_id)
    location, _created = site_service.put_location(
        connection, site_id=site_id, data=_location_data(code, body), audit=audit
    )
    return LocationOut.model_validate(location)


@sites_router.delete(
    "/{site_id}/locations/{code:path}",
    dependencies=[Requires("locations.write")],
    responses=_ERRORS,
    status_code=status.HTTP_204_NO_CONTENT,
)
def remove_location(
    site_id: SitePath,
    code: LocationCode,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> None:
    """Delete a location that never held stock and has nothing below it."""
    _in_scope(principal, site_id)
    site_service.delete_location(connection, site_id=site_id, code=code, audit=audit)


@sites_router.get("/{site_id}", dependencies=[Requires("locations.read")], responses=_ERRORS)
def read_site(site_id: SitePath, connection: ConnDep, principal: PrincipalDep) -> SiteOut:
    _in_scope(principal, site_id)
    return SiteOut.model_validate(site_service.get_site(connection, site_id))


@sites_router.put("/{site_id}", dependencies=[Requires("locations.write")], responses=_ERRORS)
def write_site(
    site_id: SitePath, body: SiteIn, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> SiteOut:
    """Create or replace a site's master record (a user limited to sites: only theirs)."""
    _in_scope(principal, site_id)
    site, _created = site_service.put_site(
        connection,
        site_id=site_id,
        kind=body.kind,
        name=body.name,
        name_en=body.name_en,
        active=body.active,
        audit=audit,
    )
    return SiteOut.model_validate(site)


def _location_data(code: str, body: LocationIn) -> LocationData:
    return LocationData(
        code=code,
        parent=body.parent,
        level=body.level,
        kind=body.kind,
        name=body.name,
        active=body.active,
    )


# --- partners ---------------------------------------------------------------------------

partners_router = APIRouter(prefix=below_api_root(PARTNERS), tags=["partners"])


def _partner_fields(body: PartnerIn) -> partner_service.PartnerFields:
    return partner_service.PartnerFields(
        **body.model_dump(exclude={"code"}),
    )


def _refuse_unseen_credit(body: PartnerIn, principal: Principal) -> None:
    if body.credit_limit is not None and not principal.financial:
        raise PermissionDeniedError(
            f"{principal.label} may not set a credit limit: their roles lack the financial "
            "field group"
        )


@partners_router.get("", dependencies=[Requires("partners.read")])
def read_partners(
    connection: ConnDep,
    *,
    after: After = None,
    limit: Limit = 100,
    role: Annotated[str | None, Query(pattern="^(supplier|customer)$")] = None,
    q: Annotated[Text | None, Query(max_length=200, description="code prefix or name part")] = None,
    active: Annotated[bool | None, Query()] = None,
) -> PartnerPage:
    """Partners in code order, a page at a time."""
    found, next_after = partner_service.list_partners(
        connection,
        after=after or None,
        limit=limit,
        filters=partner_service.PartnerFilter(role=role, q=q or None, active=active),
    )
    return PartnerPage(
        partners=[PartnerOut.model_validate(partner) for partner in found], next_after=next_after
    )


@partners_router.post(
    "",
    dependencies=[Requires("partners.write")],
    responses=_ERRORS,
    status_code=status.HTTP_201_CREATED,
)
def add_partner(
    *,
    body: PartnerCreate,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    claim: IdempotencyDep,
    response: Response,
) -> PartnerOut:
    """Add a supplier or customer; a taken code is refused (409)."""
    _refuse_unseen_credit(body, principal)
    try:
        partner, _created = partner_service.save_partner(
            connection,
            code=body.code,
            values=_partner_fields(body),
            audit=audit,
            create_only=True,
            claim=claim,
        )
    except IdempotentReplay as replay:
        replayed(response)
        partner = partner_service.get_partner(connection, replay.resource_id)
    return PartnerOut.model_validate(partner)


@partners_router.get("/{code:path}", dependencies=[Requires("partners.read")], responses=_ERRORS)
def read_partner(code: Annotated[Code, Path()], connection: ConnDep) -> PartnerOut:
    return PartnerOut.model_validate(partner_service.get_partner(connection, code))


@partners_router.put("/{code:path}", dependencies=[Requires("partners.write")], responses=_ERRORS)
def write_partner(
    code: Annotated[Code, Path()],
    body: PartnerIn,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> PartnerOut:
    """Create or replace a partner; an omitted credit limit is kept."""
    _refuse_unseen_credit(body, principal)
    partner, _created = partner_service.save_partner(
        connection,
        code=code,
        values=_partner_fields(body),
        audit=audit,
        keep_credit_limit=body.credit_limit is None,
    )
    return PartnerOut.model_validate(partner)
