"""The reference lists: reason codes, payment terms, tax rates, units, label templates.

Each list has the same three routes (GET all, GET one, PUT one), made by one factory with
the list's own fields flattened into the body beside ``name``, ``name_en`` and
``active``. Reading takes ``reference.read``, writing ``reference.write``.

This module does not use ``from __future__ import annotations``: the routes' body and
answer models are made at run time inside the factory, and FastAPI must see them as
objects, not as names it would look up in the module.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, create_model

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
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
from central_api.services import reference as reference_service
from jxc.contract import Int64, Text
from jxc.paths import (
    LABEL_TEMPLATES,
    PAYMENT_TERMS,
    REASON_CODES,
    TAX_RATES,
    UNITS,
    below_api_root,
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such entry."},
    422: {"description": "The body is invalid; message names each field."},
}


class _EntryBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    name_en: NameEn = ""
    active: bool = True


class _EntryOutBase(BaseModel):
    code: ShortCode
    name: Text
    name_en: Text
    active: bool
    version: Int64 = Field(description="feed version of its last change (0: not sent to sites)")


def _reference_router(path: str, list_name: str, attrs: type[BaseModel], title: str) -> APIRouter:
    """GET list, GET one and PUT one for a reference list, bodies flat: name, name_en,
    active and the list's own fields."""
    body_model: type[BaseModel] = create_model(f"{title}In", __base__=(_EntryBase, attrs))
    out_model: type[BaseModel] = create_model(f"{title}Out", __base__=(_EntryOutBase, attrs))
    own_fields = set(attrs.model_fields)
    router = APIRouter(prefix=below_api_root(path), tags=["reference lists"])

    def out(entry: reference_service.Entry) -> Any:
        return out_model.model_validate(
            {
                "code": entry.code,
                "name": entry.name,
                "name_en": entry.name_en,
                "active": entry.active,
                "version": entry.version,
                **entry.attrs,
            }
        )

    @router.get("", dependencies=[Requires("reference.read")], response_model=list[out_model])
    def read_all(connection: ConnDep, active: Annotated[bool | None, Query()] = None) -> list[Any]:
        return [
            out(entry)
            for entry in reference_service.list_entries(connection, list_name, active=active)
        ]

    @router.get(
        "/{code}",
        dependencies=[Requires("reference.read")],
        responses=_ERRORS,
        response_model=out_model,
    )
    def read_one(code: ShortCode, connection: ConnDep) -> Any:
        return out(reference_service.get_entry(connection, list_name, code))

    @router.put(
        "/{code}",
        dependencies=[Requires("reference.write")],
        responses=_ERRORS,
        response_model=out_model,
    )
    def write_one(code: ShortCode, body: body_model, connection: ConnDep, audit: AuditDep) -> Any:
        given = body.model_dump(mode="json")
        entry, _created = reference_service.put_entry(
            connection,
            list_name=list_name,
            code=code,
            name=given["name"],
            name_en=given["name_en"],
            active=given["active"],
            attrs={key: value for key, value in given.items() if key in own_fields},
            audit=audit,
        )
        return out(entry)

    read_all.__doc__ = f"Every entry of the {title} list, by code."
    write_one.__doc__ = f"Create or replace one entry of the {title} list."
    return router


reference_routers = [
    _reference_router(REASON_CODES, "reason_codes", ReasonAttrs, "ReasonCode"),
    _reference_router(PAYMENT_TERMS, "payment_terms", PaymentTermsAttrs, "PaymentTerms"),
    _reference_router(TAX_RATES, "tax_rates", TaxRateAttrs, "TaxRate"),
    _reference_router(UNITS, "units", UnitAttrs, "Unit"),
    _reference_router(LABEL_TEMPLATES, "label_templates", LabelTemplateAttrs, "LabelTemplate"),
]
