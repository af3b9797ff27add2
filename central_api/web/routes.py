"""The console's pages: thin handlers over the services the API uses.

Every route declares its rule as an API route does (``Requires(...)``, ``SIGNED_IN``,
``PUBLIC``): ``guard_routes`` checks these too, so a page cannot be added without one.
The pages are left out of the OpenAPI document (they answer HTML, not the API's JSON);
the rule is enforced all the same.

Writes go through the item service with the request's audit context, as the API's PUT
does: the service writes the audit entry in the change's own transaction, so an item
saved from the console is logged with the user, the request id and the address.

Unsafe requests come from htmx, which sends the CSRF token as ``X-CSRF-Token`` (the
layout puts it in ``hx-headers``); the session cookie alone is refused for them by
:func:`~central_api.core.principal.get_principal`.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, SettingsDep, on_connection
from central_api.api.permissions import PUBLIC, SIGNED_IN, Requires
from central_api.api.routes.auth import clear_session_cookies, set_session_cookies
from central_api.core.principal import Principal, PrincipalDep, principal_in_trip
from central_api.errors import (
    BarcodeTakenError,
    InvalidError,
    LockoutError,
    LoginRefusedError,
    LoginThrottledError,
    NotFoundError,
    UnknownItemError,
    UserDisabledError,
    UserExistsError,
)
from central_api.schemas.people import RoleIn, UserIn, UserPatch
from central_api.services.categories import list_categories
from central_api.services.idempotency import KEY_PATTERN, IdempotencyClaim, IdempotentReplay
from central_api.services.items import (
    BarcodeSpec,
    Item,
    ItemExistsError,
    SiteLevels,
    UnitSpec,
    UnknownLevelsError,
    create_item,
    deactivate_item,
    get_item,
    get_site_levels,
    list_items,
    upsert_item,
)
from central_api.services.people import (
    ALL_ACTIONS,
    ROLE_PATTERN,
    USERNAME_PATTERN,
    create_user,
    end_session,
    get_user,
    list_roles,
    list_users,
    put_role,
    set_own_language,
    sign_in,
    update_user,
)
from central_api.services.sites import list_sites
from central_api.web import i18n
from central_api.web.forms import (
    FIELD_CODE,
    VALUATIONS,
    ItemForm,
    check,
    form_of,
    row_field,
    service_error,
    service_message,
    unit_field,
    validate,
)
from central_api.web.render import CONSOLE_ROOT, gettext_for, render, visible_navigation
from central_api.web.search import MAX_QUERY, PAGE, ItemRow, item_for_scan, search_items
from jxc.contract import Code
from jxc.feed import ItemData

router = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)
root_router = APIRouter(include_in_schema=False)

READ_ITEMS = Requires("items.read")
WRITE_ITEMS = Requires("items.write")
MANAGE_USERS = Requires("users.manage")

LOGIN: Final = f"{CONSOLE_ROOT}/login"
ITEMS: Final = f"{CONSOLE_ROOT}/items"
ITEM: Final = f"{CONSOLE_ROOT}/items/view"
ITEM_EDIT: Final = f"{CONSOLE_ROOT}/items/edit"
ITEM_NEW: Final = f"{CONSOLE_ROOT}/items/new"
ITEM_DEACTIVATE: Final = f"{CONSOLE_ROOT}/items/deactivate"

CodeQuery = Annotated[Code, Query(alias="code")]


def local_target(target: str | None, default: str = ITEMS) -> str:
    """``target`` if it is a console page of this central, else ``default``.

    A login or language link carries where to go next; only a path below the console is
    followed, so a link cannot send a user to another site (no ``//host``, no scheme).
    """
    if not target or len(target) > 2000:
        return default
    if not target.startswith(f"{CONSOLE_ROOT}/") and target != CONSOLE_ROOT:
        return default
    if target.startswith("//") or "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    return target


def item_url(code: str, base: str = ITEM) -> str:
    return f"{base}?{urlencode({'code': code})}"


def redirect(request: Request, target: str) -> Response:
    """Go to ``target``: by ``HX-Redirect`` for an htmx request, else a 303."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=200, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


# --- signing in and out, language ---------------------------------------------------


@root_router.get("/", dependencies=[PUBLIC])
def root() -> RedirectResponse:
    """Central's root is the console's front door."""
    return RedirectResponse(f"{CONSOLE_ROOT}/", status_code=307)


@router.get("", dependencies=[SIGNED_IN])
@router.get("/", dependencies=[SIGNED_IN])
def home(principal: PrincipalDep) -> RedirectResponse:
    """The dashboard for a user who may read stock, else the first page the roles open."""
    if principal.can("stock.read"):
        return RedirectResponse(f"{CONSOLE_ROOT}/dashboard", status_code=303)
    entries = visible_navigation(principal)
    return RedirectResponse(entries[0].path if entries else f"{CONSOLE_ROOT}/me", status_code=303)


@router.get("/me", dependencies=[SIGNED_IN])
def me(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """Who is signed in, with roles and sites: the page of a user with no other page."""
    return render(request, "me.html", principal=principal)


@router.post("/me/language", dependencies=[SIGNED_IN])
async def my_language(request: Request, principal: PrincipalDep, connection: ConnDep) -> Response:
    """Store the signed-in user's language (the switch in the header, or the choice on
    their page; empty: follow the browser), audited ``user.set_language``; then back to
    ``next``. The cookie is set too, so the login page after a sign-out speaks it."""
    posted = await request.form()
    tag = str(posted.get("language", ""))[:16]
    chosen = i18n.by_tag(tag)
    if tag and chosen is None:
        raise InvalidError(f"language: {tag!r} is not one of the console's languages")
    assert principal.user_id is not None  # SIGNED_IN: a user
    user_id = principal.user_id
    await run_in_threadpool(
        lambda: set_own_language(connection, user_id, None if chosen is None else chosen.tag)
    )
    response = redirect(
        request, local_target(str(posted.get("next", ""))[:2000], f"{CONSOLE_ROOT}/me")
    )
    if chosen is None:
        response.delete_cookie(i18n.LANG_COOKIE, path="/")
    else:
        response.set_cookie(
            i18n.LANG_COOKIE, chosen.tag, max_age=365 * 86_400, path="/", samesite="lax"
        )
    return response


@router.get("/login", dependencies=[PUBLIC])
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"next": local_target(next), "error": None})


@router.post("/login", dependencies=[PUBLIC])
async def login(request: Request, connection: ConnDep, settings: SettingsDep) -> Response:
    """Check the password and open a cookie session, as ``POST /api/v1/auth/session``."""
    form = await request.form()
    username = str(form.get("username", ""))[:200]
    password = str(form.get("password", ""))[:1000]
    target = local_target(str(form.get("next", "")))
    _ = gettext_for(i18n.language_of(request))
    error: str | None = None
    status = 401
    if not username or not password:
        error, status = _("Enter your user name and password."), 422
    elif not re.fullmatch(USERNAME_PATTERN, username):
        error = _("Wrong user name or password.")  # no such user can exist: ask nobody
    else:
        address = request.client.host if request.client is not None else "unknown"
        try:
            issued = sign_in(
                connection,
                username=username,
                password=password,
                address=address,
                kind="cookie",
                ttl_s=settings.session_ttl_s,
            )
        except LoginThrottledError:
            error, status = _("Too many failed attempts. Wait a minute and try again."), 429
        except UserDisabledError:
            error = _("This user is disabled. Ask an administrator.")
        except LoginRefusedError:
            error = _("Wrong user name or password.")
        else:
            response = RedirectResponse(target, status_code=303)
            set_session_cookies(response, issued, settings)
            return response
    return render(
        request,
        "login.html",
        {"next": target, "error": error, "username": username},
        status_code=status,
    )


@router.post("/logout", dependencies=[SIGNED_IN])
def logout(request: Request, principal: PrincipalDep, connection: ConnDep) -> Response:
    if principal.session is not None:
        end_session(connection, principal.session)
    response = redirect(request, LOGIN)
    clear_session_cookies(response)
    return response


@router.get("/lang", dependencies=[PUBLIC])
def choose_language(
    to: Annotated[str, Query(max_length=16)],
    next: Annotated[str | None, Query(max_length=2000)] = None,
) -> RedirectResponse:
    """Remember the language picked with the switch (a cookie), and go back."""
    language = i18n.by_tag(to) or i18n.DEFAULT
    response = RedirectResponse(local_target(next), status_code=303)
    response.set_cookie(
        i18n.LANG_COOKIE, language.tag, max_age=365 * 86_400, path="/", samesite="lax"
    )
    return response


# --- items ------------------------------------------------------------------------------


@router.get("/items", dependencies=[READ_ITEMS])
@principal_in_trip
async def items_page(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY)] = "",
    after: Annotated[Code | None, Query()] = None,
) -> Response:
    """The item list; a search that is one item's barcode (a scan) opens that item.

    One trip through the thread pool (``principal_in_trip``): the session's lookup, the
    ``items.read`` rule, the page's query and its rendering, on one connection, where a
    ``def`` page with a connection and a principal paid three trips and the lookup
    (``docs/performance.md``, "The item page"). The rule is still checked before the
    query; a logged-out session or a disabled user is refused at this very request.
    """
    query = q.strip()

    def work(connection: Connection) -> Response:
        principal: Principal = request.state.principal
        if query and after is None:
            scanned = item_for_scan(connection, query)
            if scanned is not None:
                return redirect(request, item_url(scanned))
        if query:
            found = search_items(connection, query, after=after or None, limit=PAGE)
            rows, next_after = found.rows, found.next_after
        else:
            page = list_items(connection=connection, after=after or None, limit=PAGE)
            rows = [_row(item) for item in page.items]
            next_after = page.next_after
        more = None
        if next_after is not None:
            more = f"{ITEMS}?{urlencode({'q': query, 'after': next_after})}"
        context = {"rows": rows, "q": query, "more": more, "item_url": item_url}
        fragment = request.headers.get("hx-target") == "item-results"
        return render(
            request,
            "items_results.html" if fragment else "items.html",
            context,
            principal=principal,
        )

    return await on_connection(request, work)


def _row(item: Item) -> ItemRow:
    return ItemRow(
        item.item_code,
        item.name,
        item.uom,
        item.active,
        [(barcode.barcode, barcode.qty_per) for barcode in item.barcodes],
        name_en=item.name_en,
    )


@router.get("/items/view", dependencies=[READ_ITEMS])
def item_page(
    request: Request, code: CodeQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    item = get_item(connection=connection, item_code=code)
    return render(
        request,
        "item.html",
        {
            "item": _item_view(item, principal),
            "levels": _levels(connection, principal, code),
            "edit_url": item_url(code, ITEM_EDIT),
            "deactivate_url": item_url(code, ITEM_DEACTIVATE),
        },
        principal=principal,
    )


def _levels(connection: ConnDep, principal: Principal, code: str) -> list[SiteLevels]:
    """The item's stock levels at each site the user sees (a chain has a handful)."""
    found = []
    for site in list_sites(connection, visible=principal.sites):
        if not principal.sees_site(site.site_id):
            continue
        try:
            found.append(
                get_site_levels(connection=connection, site_id=site.site_id, item_code=code)
            )
        except UnknownLevelsError:
            continue
    return found


def _item_view(item: Item, principal: Principal) -> dict[str, Any]:
    """What an item page may show: the financial fields only for a role that sees them.

    They are left out here, not hidden by the template, so a template that forgets the
    check still has nothing to print.
    """
    view: dict[str, Any] = {
        name: getattr(item, name)
        for name in (
            "item_code",
            "name",
            "name_en",
            "uom",
            "active",
            "archived",
            "updated_at",
            "barcodes",
            "units",
            "category",
            "lot_tracked",
            "expiry_tracked",
            "serial_tracked",
            "shelf_life_days",
            "min_remaining_days",
            "unit_weight",
            "weight_tolerance",
            "valuation",
        )
    }
    if principal.financial:
        view["prices"] = {
            "cost": item.cost,
            "price": item.price,
            "purchase_price": item.purchase_price,
        }
    return view


def _fingerprint(item: Item) -> str:
    """Changes whenever the item, its barcodes or its units do: guards an edit against
    another edit saved in between (each write bumps a feed version; a removal, a count)."""
    versions = [
        item.version,
        *(barcode.version for barcode in item.barcodes),
        *(unit.version for unit in item.units),
    ]
    return f"{max(versions)}.{len(item.barcodes)}.{len(item.units)}"


@router.get("/items/new", dependencies=[WRITE_ITEMS])
def new_item_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    form = ItemForm(barcodes=[])
    return _form_page(
        request, connection, principal, form, errors={}, creating=True, key=str(uuid.uuid4())
    )


@router.get("/items/edit", dependencies=[WRITE_ITEMS])
def edit_item_page(
    request: Request, code: CodeQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    item = get_item(connection=connection, item_code=code)
    form = form_of(item, financial=principal.financial)
    return _form_page(
        request,
        connection,
        principal,
        form,
        errors={},
        creating=False,
        fingerprint=_fingerprint(item),
    )


def _form_page(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    form: ItemForm,
    *,
    errors: dict[str, str],
    creating: bool,
    fingerprint: str = "",
    key: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    fragment = request.headers.get("hx-request") == "true" and request.method == "POST"
    return render(
        request,
        "item_form_fragment.html" if fragment else "item_form.html",
        {
            "form": form,
            "errors": errors,
            "creating": creating,
            "fingerprint": fingerprint,
            "idempotency_key": key,
            "financial": principal.financial,
            "categories": list_categories(connection),
            "valuations": VALUATIONS,
            "row_field": row_field,
            "unit_field": unit_field,
            "action": ITEM_NEW if creating else item_url(form.item_code, ITEM_EDIT),
            "cancel": ITEMS if creating else item_url(form.item_code),
        },
        principal=principal,
        status_code=status_code,
    )


@router.post("/items/new", dependencies=[WRITE_ITEMS])
async def create_item_form(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    return await _save(request, connection, principal, audit, creating=True)


@router.post("/items/edit", dependencies=[WRITE_ITEMS])
async def update_item(
    request: Request,
    code: CodeQuery,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    return await _save(request, connection, principal, audit, creating=False, code=code)


def form_claim(
    request: Request, principal: Principal, key: str, body: bytes
) -> IdempotencyClaim | None:
    """The form's ``Idempotency-Key`` (one per opened form) as the API's dependency makes it.

    A double submit, or a retry after a lost answer, is then answered with what the first
    one made instead of a second record or a "code exists". A key that is not one (typed
    by hand into the hidden field) is no key.
    """
    if not re.fullmatch(KEY_PATTERN, key):
        return None
    return IdempotencyClaim.of(
        principal=principal.label,
        key=key,
        operation=f"POST {request.url.path}",
        body=request.url.path.encode() + b"\n" + body,
    )


async def _save(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    audit: AuditDep,
    *,
    creating: bool,
    code: str | None = None,
) -> Response:
    """Check the whole form, then save it in one call of the item service (one transaction,
    its audit entry included): a refused form changes nothing."""
    raw = await request.body()
    posted = await request.form()
    form = ItemForm.from_post(posted, getlist=posted.getlist)
    if not creating:
        assert code is not None
        form.item_code = code  # the code is the page's, not a field
    _ = gettext_for(i18n.language_of(request))
    checked = check(form, financial=principal.financial, gettext=_, creating=creating)
    errors = dict(checked.errors)
    fingerprint = str(posted.get("fingerprint", ""))
    key = str(posted.get("idempotency_key", ""))[:200]
    if not errors and not creating:
        errors = await _conflicts(connection, form, fingerprint=fingerprint, _=_)
    if not errors and checked.body is not None:
        body = checked.body
        barcodes = [
            BarcodeSpec(barcode=entry.barcode, uom=entry.uom, qty_per=entry.qty_per)
            for entry in body.barcodes or ()
        ]
        units = [UnitSpec(uom=u.uom, factor=u.factor, of=u.of) for u in body.units or ()]
        money = body.financial() if principal.financial else {}
        try:
            if creating:
                saved = await _run(
                    create_item,
                    connection=connection,
                    item_code=checked.item_code or None,
                    fields=body.feed_fields(),
                    barcodes=barcodes,
                    units=units,
                    financial=money,
                    valuation=body.valuation,
                    audit=audit,
                    claim=form_claim(request, principal, key, raw),
                )
            else:
                saved = await _run(
                    upsert_item,
                    connection=connection,
                    item=ItemData(item_code=checked.item_code, **body.feed_fields()),
                    barcodes=barcodes,
                    units=units,
                    valuation=body.valuation,
                    audit=audit,
                    **money,
                )
        except IdempotentReplay as replay:
            return redirect(request, item_url(replay.resource_id))
        except BarcodeTakenError as taken:
            index = next(
                (i for i, row in enumerate(form.barcodes) if row.barcode == taken.barcode), 0
            )
            errors[row_field(index, "barcode")] = _(
                "This barcode belongs to item %(owner)s.", owner=taken.owner
            )
        except ItemExistsError:
            errors[FIELD_CODE] = _("An item with this code exists already.")
        except InvalidError as refused:
            where, reason = service_error(str(refused))
            errors[where] = service_message(reason, _)
        else:
            return redirect(request, item_url(saved.item_code))
    return _form_page(
        request,
        connection,
        principal,
        form,
        errors=errors,
        creating=creating,
        fingerprint=fingerprint,
        key=key,
        status_code=422,
    )


async def _conflicts(
    connection: ConnDep, form: ItemForm, *, fingerprint: str, _: Any
) -> dict[str, str]:
    """An edited item must still exist and must not have changed meanwhile.

    (A new item's code is the service's to refuse, after the form's key is looked up, so
    a double submit is a replay rather than "code exists".)"""
    try:
        stored = await _run(get_item, connection=connection, item_code=form.item_code)
    except UnknownItemError:
        return {"form": _("This item no longer exists.")}
    if fingerprint and fingerprint != _fingerprint(stored):
        return {
            "form": _(
                "Someone saved this item while you were editing it. Open it again to see "
                "their change; nothing of yours was saved."
            )
        }
    return {}


async def _run(function: Any, /, **arguments: Any) -> Any:
    """A blocking service call off the event loop (the handler is async to read the form)."""
    return await run_in_threadpool(function, **arguments)


@router.post("/items/deactivate", dependencies=[WRITE_ITEMS])
def deactivate(request: Request, code: CodeQuery, connection: ConnDep, audit: AuditDep) -> Response:
    """Archive the item (the API's deactivate command): kept, since ledgers name it, but
    inactive; the edit form's "active" box brings it back."""
    deactivate_item(connection=connection, item_code=code, audit=audit)
    return redirect(request, item_url(code))


# --- people -----------------------------------------------------------------------------


@router.get("/users", dependencies=[MANAGE_USERS])
def users_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    return render(request, "users.html", {"users": list_users(connection)}, principal=principal)


@router.get("/roles", dependencies=[MANAGE_USERS])
def roles_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    """Each role with its actions and whether it sees the financial field group (read
    only: roles are edited through the API, ``PUT /api/v1/roles/{name}``)."""
    return render(request, "roles.html", {"roles": list_roles(connection)}, principal=principal)


RoleQuery = Annotated[str, Query(alias="name", pattern=ROLE_PATTERN, max_length=40)]


@router.get("/roles/edit", dependencies=[MANAGE_USERS])
def edit_role_page(
    request: Request, name: RoleQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    role = next((r for r in list_roles(connection) if r.name == name), None)
    if role is None:
        raise NotFoundError(f"no such role: {name!r}")
    form = {
        "description": role.description,
        "actions": set(role.actions),
        "financial": role.financial,
    }
    return _role_form(request, principal, name, form, {})


def _role_form(
    request: Request,
    principal: Principal,
    name: str,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "role_form.html",
        {
            "name": name,
            "form": form,
            "errors": errors,
            "all_actions": sorted(ALL_ACTIONS.items()),
            "action": f"{CONSOLE_ROOT}/roles/edit?{urlencode({'name': name})}",
        },
        principal=principal,
        status_code=status_code,
    )


@router.post("/roles/edit", dependencies=[MANAGE_USERS])
async def update_role(
    request: Request, name: RoleQuery, connection: ConnDep, principal: PrincipalDep
) -> Response:
    """Replace the role's grants (the API's ``PUT /roles/{name}``: audited, and refused if
    no enabled user could manage people afterwards)."""
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {
        "description": str(posted.get("description", "")).strip(),
        "actions": {str(value) for value in posted.getlist("actions")},
        "financial": str(posted.get("financial", "")) in ("on", "true", "1"),
    }
    if not any(r.name == name for r in list_roles(connection)):
        raise NotFoundError(f"no such role: {name!r}")
    checked, errors = validate(RoleIn, {**form, "actions": sorted(form["actions"])}, _)
    if not errors:
        try:
            await _run(
                put_role,
                connection=connection,
                name=name,
                description=checked.description,
                actions=checked.actions,
                financial=checked.financial,
            )
        except LockoutError:
            errors["form"] = _(
                "After this change nobody could manage users and roles; keep at least one "
                "admin. Nothing was saved."
            )
        except InvalidError as refused:
            errors["actions"] = _("Refused: %(reason)s", reason=str(refused))
        else:
            return redirect(request, f"{CONSOLE_ROOT}/roles")
    errors = {
        ("actions" if key.startswith("actions") else key): text for key, text in errors.items()
    }
    return _role_form(request, principal, name, form, errors, status_code=422)


UserQuery = Annotated[str, Query(alias="name", pattern=USERNAME_PATTERN, max_length=64)]
USERS: Final = f"{CONSOLE_ROOT}/users"


def _user_form(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    username: str | None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "user_form.html",
        {
            "form": form,
            "errors": errors,
            "username": username,
            "roles": list_roles(connection),
            "action": f"{USERS}/new"
            if username is None
            else f"{USERS}/edit?{urlencode({'name': username})}",
        },
        principal=principal,
        status_code=status_code,
    )


@router.get("/users/new", dependencies=[MANAGE_USERS])
def new_user_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    form: dict[str, Any] = {
        "username": "",
        "display_name": "",
        "roles": set(),
        "sites": "",
        "idempotency_key": str(uuid.uuid4()),
    }
    return _user_form(request, connection, principal, form, {}, username=None)


@router.get("/users/edit", dependencies=[MANAGE_USERS])
def edit_user_page(
    request: Request, name: UserQuery, connection: ConnDep, principal: PrincipalDep
) -> HTMLResponse:
    user = get_user(connection, name)
    form: dict[str, Any] = {
        "username": user.username,
        "display_name": user.display_name,
        "roles": set(user.roles),
        "sites": "" if user.sites is None else ", ".join(user.sites),
        "disabled": user.disabled,
        "language": user.language or "",
    }
    return _user_form(request, connection, principal, form, {}, username=name)


def _site_list(text: str) -> list[str] | None:
    """``S01, S02`` → the sites; empty → None (every site)."""
    found = [part.strip() for part in re.split(r"[,\s，]+", text) if part.strip()]
    return found or None


@router.post("/users/new", dependencies=[MANAGE_USERS])
async def create_user_form(
    request: Request, connection: ConnDep, principal: PrincipalDep
) -> Response:
    return await _save_user(request, connection, principal, username=None)


@router.post("/users/edit", dependencies=[MANAGE_USERS])
async def update_user_form(
    request: Request, name: UserQuery, connection: ConnDep, principal: PrincipalDep
) -> Response:
    get_user(connection, name)  # 404 for no such user
    return await _save_user(request, connection, principal, username=name)


async def _save_user(
    request: Request, connection: ConnDep, principal: Principal, *, username: str | None
) -> Response:
    """The API's ``POST /users`` or ``PATCH /users/{name}``, checked with its models: a
    user's roles, the sites they are limited to (none: every site), disabled, and a new
    password when one is typed. Audited by the service (``user.create`` / ``user.update``);
    the lock-out rules (an admin cannot disable themselves or leave nobody able to manage
    people) are the service's."""
    raw = await request.body()
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {
        "idempotency_key": str(posted.get("idempotency_key", ""))[:200],
        "username": username or str(posted.get("username", "")).strip()[:200],
        "display_name": str(posted.get("display_name", "")).strip()[:200],
        "roles": {str(value)[:40] for value in posted.getlist("roles")},
        "sites": str(posted.get("sites", ""))[:5000],
        "disabled": str(posted.get("disabled", "")) in ("on", "true", "1"),
        "language": str(posted.get("language", ""))[:16],
    }
    password = str(posted.get("password", ""))[:1000]
    sites = _site_list(form["sites"])
    body: dict[str, Any] = {
        "display_name": form["display_name"] or None,
        "roles": sorted(form["roles"]),
        "sites": sites,
    }
    if username is None:
        checked, errors = validate(
            UserIn, {**body, "username": form["username"], "password": password}, _
        )
    else:
        body["disabled"] = form["disabled"]
        body["language"] = form["language"] or None
        if password:
            body["password"] = password
        checked, errors = validate(UserPatch, body, _)
    errors = {
        (key.split(".")[0] if key.startswith(("roles", "sites")) else key): text
        for key, text in errors.items()
    }
    if not errors:
        try:
            if username is None:
                await _run(
                    create_user,
                    connection=connection,
                    username=checked.username,
                    password=checked.password,
                    role_names=checked.roles,
                    sites=checked.sites,
                    display_name=checked.display_name,
                    claim=form_claim(request, principal, form["idempotency_key"], raw),
                )
            else:
                name = username
                await run_in_threadpool(
                    lambda: update_user(
                        connection,
                        name,
                        role_names=checked.roles,
                        sites=checked.sites,
                        all_sites=checked.sites is None,
                        display_name=checked.display_name,
                        disabled=checked.disabled,
                        password=checked.password,
                        language=checked.language,
                        browser_language=checked.language is None,
                        acting_user_id=principal.user_id,
                    )
                )
        except IdempotentReplay:
            return redirect(request, USERS)  # a double submit: the first one made the user
        except UserExistsError:
            errors["username"] = _("A record with this code exists already.")
        except LockoutError:
            errors["form"] = _(
                "After this change nobody could manage users and roles; keep at least one "
                "admin. Nothing was saved."
            )
        except InvalidError as refused:
            errors["roles"] = _("Refused: %(reason)s", reason=str(refused))
        else:
            return redirect(request, USERS)
    return _user_form(
        request, connection, principal, form, errors, username=username, status_code=422
    )


def login_url(next_path: str) -> str:
    return f"{LOGIN}?{urlencode({'next': local_target(next_path)})}"
