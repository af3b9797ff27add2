"""The console's category tree (商品分类): the tree, and one form to add a category, rename
it, move it under another parent or change its coding rule.

Rules as the API's ``/api/v1/categories``: ``items.read`` to see, ``items.write`` to save.
A save is one call of ``services.categories.put_category`` (audited ``category.create`` /
``category.update``); the service refuses a parent that does not exist or that would make
the tree go round in a circle, and the refusal is shown next to the parent. A new
category whose code exists is refused (a "new" form must not replace one).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import InvalidError, NotFoundError
from central_api.schemas.master import CategoryIn, ShortCode
from central_api.services import categories as service
from central_api.web import i18n
from central_api.web.forms import service_error, validate
from central_api.web.render import CONSOLE_ROOT, gettext_for, render
from central_api.web.routes import redirect

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

READ = Requires("items.read")
WRITE = Requires("items.write")
CATEGORIES: Final = f"{CONSOLE_ROOT}/categories"

CodeQuery = Annotated[str, Query(alias="code", max_length=32)]


class _Code(BaseModel):
    code: ShortCode


def _category_code(code: str) -> str:
    """A code from the query that a category could have, else no such category (a NUL
    never reaches the database)."""
    if code and not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", code):
        raise NotFoundError(f"category {code[:40]!r} does not exist")
    return code


@pages.get("/categories", dependencies=[READ])
def categories_page(request: Request, connection: ConnDep, principal: PrincipalDep) -> HTMLResponse:
    """The tree, each level under its parent, by code."""
    found = service.list_categories(connection)
    children: dict[str | None, list[service.Category]] = {}
    for category in found:
        children.setdefault(category.parent, []).append(category)
    return render(
        request,
        "categories.html",
        {"children": children, "count": len(found), "can_write": principal.can("items.write")},
        principal=principal,
    )


def _form(
    request: Request,
    connection: ConnDep,
    principal: Principal,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    code: str,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "category_form.html",
        {
            "form": form,
            "errors": errors,
            "code": code,
            "parents": [c for c in service.list_categories(connection) if c.code != code],
        },
        principal=principal,
        status_code=status_code,
    )


def _stored_form(stored: service.Category) -> dict[str, Any]:
    return {
        "code": stored.code,
        "parent": stored.parent or "",
        "name": stored.name,
        "name_en": stored.name_en,
        "code_prefix": stored.code_prefix or "",
        "code_digits": str(stored.code_digits),
        "code_pattern": stored.code_pattern or "",
    }


@pages.get("/categories/edit", dependencies=[WRITE])
def category_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    code: CodeQuery = "",
    parent: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    """A category's form; without ``code`` a new one's (under ``parent`` when given)."""
    code = _category_code(code)
    form: dict[str, Any] = {
        "code": "",
        "parent": _category_code(parent),
        "name": "",
        "name_en": "",
        "code_prefix": "",
        "code_digits": "6",
        "code_pattern": "",
    }
    if code:
        form = _stored_form(service.get_category(connection, code))
    return _form(request, connection, principal, form, {}, code=code)


@pages.post("/categories/edit", dependencies=[WRITE])
async def save_category(
    request: Request,
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    code: CodeQuery = "",
) -> Response:
    code = _category_code(code)
    if code:
        service.get_category(connection, code)  # 404 for no such category
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    names = ("code", "parent", "name", "name_en", "code_prefix", "code_digits", "code_pattern")
    form: dict[str, Any] = {name: str(posted.get(name, "")).strip()[:400] for name in names}
    if code:
        form["code"] = code
    body = {
        name: (form[name] or None)
        if name in ("parent", "code_prefix", "code_pattern")
        else form[name]
        for name in names
        if name != "code" and not (name == "code_digits" and not form[name])
    }
    checked, errors = validate(CategoryIn, body, _)
    if not code:
        errors.update(validate(_Code, {"code": form["code"]}, _)[1])
        if not errors:
            try:
                service.get_category(connection, form["code"])
            except service.UnknownCategoryError:
                pass
            else:
                errors["code"] = _("A record with this code exists already.")
    if not errors:
        try:
            service.put_category(
                connection,
                code=form["code"],
                parent=checked.parent,
                name=checked.name,
                name_en=checked.name_en,
                code_prefix=checked.code_prefix,
                code_digits=checked.code_digits,
                code_pattern=checked.code_pattern,
                audit=audit,
            )
        except InvalidError as refused:
            where, reason = service_error(str(refused))
            errors[where if where in names else "form"] = reason
        else:
            return redirect(request, CATEGORIES)
    return _form(request, connection, principal, form, errors, code=code, status_code=422)


@pages.post("/categories/delete", dependencies=[WRITE])
def remove_category(
    request: Request,
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    code: CodeQuery,
) -> Response:
    """Delete a category (the API's ``DELETE /categories/{code}``, audited
    ``category.delete``). One that items or other categories still use is refused by the
    service, and the form says why and what to do, in the user's language: items name
    their category, so deleting it would leave them pointing at nothing."""
    code = _category_code(code)
    stored = service.get_category(connection, code)  # 404 for no such category
    _ = gettext_for(i18n.language_of(request))
    try:
        service.delete_category(connection, code=code, audit=audit)
    except service.CategoryInUseError as refused:
        message = (
            _("Items use this category: move them to another category first. Nothing was deleted.")
            if refused.by == "items"
            else _(
                "Other categories are below this one: move or delete them first. "
                "Nothing was deleted."
            )
        )
    else:
        return redirect(request, CATEGORIES)
    return _form(
        request,
        connection,
        principal,
        _stored_form(stored),
        {"form": message},
        code=code,
        status_code=422,
    )
