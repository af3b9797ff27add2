"""The console's reference lists: reason codes, payment terms, tax rates, units, label
templates. One list page and one form for all five, driven by each list's own attribute
model (the API's ``ReasonAttrs``, ``PaymentTermsAttrs``...), so a field added to a list's
model appears in its form without a template change.

Rules as the API's ``/api/v1/<list>`` routes: ``reference.read`` to see, ``reference.write``
to save; a save is one call of ``services.reference.put_entry`` (audited there, and sent to
the sites for the lists they need). A new entry's code that exists is refused (a form
called "new" must not replace one); a PUT of the same content is idempotent by nature.
"""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, create_model

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import NotFoundError
from central_api.schemas.master import (
    LabelTemplateAttrs,
    Name,
    NameEn,
    PaymentTermsAttrs,
    ReasonAttrs,
    ShortCode,
    TaxRateAttrs,
    UnitAttrs,
)
from central_api.services import reference as service
from central_api.web import i18n
from central_api.web.forms import validate
from central_api.web.render import CONSOLE_ROOT, N_, gettext_for, render
from central_api.web.routes import redirect

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

READ = Requires("reference.read")
WRITE = Requires("reference.write")
REFERENCE: Final = f"{CONSOLE_ROOT}/reference"

ATTRS: Final[dict[str, type[BaseModel]]] = {
    "reason_codes": ReasonAttrs,
    "payment_terms": PaymentTermsAttrs,
    "tax_rates": TaxRateAttrs,
    "units": UnitAttrs,
    "label_templates": LabelTemplateAttrs,
}
TITLES: Final[dict[str, str]] = {
    "reason_codes": N_("Reason codes"),
    "payment_terms": N_("Payment terms"),
    "tax_rates": N_("Tax rates"),
    "units": N_("Units"),
    "label_templates": N_("Label templates"),
}
FIELD_LABELS: Final[dict[str, str]] = {
    "applies_to": N_("Applies to"),
    "days": N_("Days until due"),
    "basis": N_("Counted from"),
    "rate": N_("Rate (a fraction: 0.13 for 13 %%)"),
    "decimals": N_("Decimal places"),
    "language": N_("Printer language"),
    "width_mm": N_("Width (mm)"),
    "height_mm": N_("Height (mm)"),
    "body": N_("Template"),
    # choices
    "write_off": N_("Write-off"),
    "adjustment": N_("Count adjustment"),
    "return": N_("Return"),
    "other_receipt": N_("Other receipt"),
    "other_issue": N_("Other issue"),
    "invoice": N_("Invoice date"),
    "month_end": N_("End of the invoice's month"),
    "zpl": "ZPL",
    "tspl": "TSPL",
}

ListQuery = Annotated[str, Query(alias="list", max_length=32)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    name_en: NameEn = ""
    active: bool = True


class _Code(BaseModel):
    code: ShortCode


_MODELS: Final[dict[str, type[BaseModel]]] = {
    name: create_model(f"Console{name}", __base__=(_Entry, attrs)) for name, attrs in ATTRS.items()
}


def _list_name(value: str) -> str:
    if value not in ATTRS:
        raise NotFoundError(f"no reference list {value!r}")
    return value


def _entry_code(code: str) -> str:
    """A code from the query: one an entry could have, else no such entry (never sent to
    the database as it is: PostgreSQL refuses a NUL in text)."""
    if code and not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", code):
        raise NotFoundError(f"there is no entry {code[:40]!r}")
    return code


def _fields(list_name: str) -> list[dict[str, Any]]:
    """The list's own fields as the form draws them: kind (text, number, choice, choices,
    area) and the choices of a ``Literal``."""
    drawn = []
    for name, info in ATTRS[list_name].model_fields.items():
        annotation = info.annotation
        choices: tuple[Any, ...] = ()
        kind = "area" if name == "body" else "text"
        if typing.get_origin(annotation) is list:
            (inner,) = typing.get_args(annotation)
            inner = typing.get_args(inner)[0] if typing.get_origin(inner) is Annotated else inner
            choices, kind = typing.get_args(inner), "choices"
        elif typing.get_origin(annotation) is Literal:
            choices, kind = typing.get_args(annotation), "choice"
        drawn.append({"name": name, "kind": kind, "choices": choices})
    return drawn


@pages.get("/reference", dependencies=[READ])
def reference_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, chosen: ListQuery = "units"
) -> HTMLResponse:
    list_name = _list_name(chosen)
    return render(
        request,
        "reference.html",
        {
            "list_name": list_name,
            "entries": service.list_entries(connection, list_name),
            "fields": _fields(list_name),
            "titles": TITLES,
            "field_labels": FIELD_LABELS,
        },
        principal=principal,
    )


def _form_page(
    request: Request,
    principal: Principal,
    list_name: str,
    form: dict[str, Any],
    errors: dict[str, str],
    *,
    code: str,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "reference_form.html",
        {
            "list_name": list_name,
            "form": form,
            "errors": errors,
            "code": code,
            "fields": _fields(list_name),
            "titles": TITLES,
            "field_labels": FIELD_LABELS,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.get("/reference/edit", dependencies=[WRITE])
def reference_form(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    chosen: ListQuery,
    code: Annotated[str, Query(max_length=32)] = "",
) -> HTMLResponse:
    """An entry's form; without ``code`` a new entry's."""
    list_name = _list_name(chosen)
    code = _entry_code(code)
    form: dict[str, Any] = {"code": "", "name": "", "name_en": "", "active": True}
    if code:
        entry = service.get_entry(connection, list_name, code)
        form = {
            "code": entry.code,
            "name": entry.name,
            "name_en": entry.name_en,
            "active": entry.active,
            **entry.attrs,
        }
    return _form_page(request, principal, list_name, form, {}, code=code)


@pages.post("/reference/edit", dependencies=[WRITE])
async def save_reference(
    request: Request,
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    chosen: ListQuery,
    code: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    list_name = _list_name(chosen)
    code = _entry_code(code)
    if code:
        service.get_entry(connection, list_name, code)  # 404 for no such entry
    posted = await request.form()
    _ = gettext_for(i18n.language_of(request))
    form: dict[str, Any] = {
        "code": code or str(posted.get("code", "")).strip()[:200],
        "name": str(posted.get("name", "")).strip()[:400],
        "name_en": str(posted.get("name_en", "")).strip()[:400],
        "active": str(posted.get("active", "")) in ("on", "true", "1"),
    }
    for field in _fields(list_name):
        name = field["name"]
        if field["kind"] == "choices":
            form[name] = [str(v)[:40] for v in posted.getlist(name)][:20]
        elif field["kind"] == "area":
            form[name] = str(posted.get(name, ""))[:20_000]
        else:
            form[name] = str(posted.get(name, "")).strip()[:200]
    body = {k: v for k, v in form.items() if k != "code" and v != ""}
    checked, errors = validate(_MODELS[list_name], body, _)
    errors = {key.split(".")[0]: text for key, text in errors.items()}
    if not code:
        errors.update(validate(_Code, {"code": form["code"]}, _)[1])
    if not errors and not code:
        try:
            service.get_entry(connection, list_name, form["code"])
        except service.UnknownEntryError:
            pass
        else:
            errors["code"] = _("A record with this code exists already.")
    if not errors:
        given = checked.model_dump(mode="json")
        service.put_entry(
            connection,
            list_name=list_name,
            code=form["code"],
            name=given["name"],
            name_en=given["name_en"],
            active=given["active"],
            attrs={
                key: value for key, value in given.items() if key in ATTRS[list_name].model_fields
            },
            audit=audit,
        )
        return redirect(request, f"{REFERENCE}?list={list_name}")
    return _form_page(request, principal, list_name, form, errors, code=code, status_code=422)
