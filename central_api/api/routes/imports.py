"""``/api/v1/imports/<kind>`` and ``/api/v1/exports/<kind>``: master data as CSV or XLSX.

An import takes the file as the request body (``?format=csv`` or ``xlsx``) and needs the
kind's own import action (``items.import``, ``partners.import``, ``locations.import``,
``stock.import`` for ``opening_stock``):
a bulk write is a separate grant from editing one record, so an admin can allow one
without the other. A file with any bad row is answered 422 with ``errors``, one entry
per (row, column, reason), and nothing is written. An import is idempotent by nature (the
same file again changes nothing), so it needs no ``Idempotency-Key``.

An export needs the kind's read action and leaves out the financial columns for a role
without the financial field group; locations are exported for the caller's sites only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep, ProjectionsDep
from central_api.api.errors import PROBLEM_JSON
from central_api.api.permissions import Requires
from central_api.api.quoting import excerpt
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import InvalidError, SiteOutOfScopeError
from central_api.schemas.items import ItemIn
from central_api.schemas.master import (
    ImportProblem,
    ImportResultOut,
    LocationCreate,
    PartnerCreate,
    RowErrorOut,
)
from central_api.services.imports import (
    IMPORT_ACTION,
    ImportRefusedError,
    ImportResult,
    RowModels,
    export_rows,
    import_file,
    write_table,
)
from central_api.services.imports import KINDS as IMPORT_KINDS
from jxc.contract import MAX_TEXT, SiteId
from jxc.paths import API_ROOT

IMPORTS = f"{API_ROOT}/imports"
EXPORTS = f"{API_ROOT}/exports"
IMPORT_PATHS = tuple(f"{IMPORTS}/{kind}" for kind in IMPORT_KINDS)
"""Paths whose bodies may be as large as ``max_import_bytes``."""

Format = Annotated[Literal["csv", "xlsx"], Query(description="the file's format")]

_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_WRITE_ACTION = {
    "items": "items.write",
    "partners": "partners.write",
    "locations": "locations.write",
}

router = APIRouter(tags=["imports and exports"])

ROW_MODELS = RowModels(item=ItemIn, partner=PartnerCreate, location=LocationCreate)
"""An imported row is checked by the model that checks the API's body for the same thing."""

_FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            _MEDIA["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "the whole file; its first row names the columns",
    }
}
_IMPORT_ANSWERS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The caller lacks the kind's import action."},
    422: {
        "model": ImportProblem,
        "description": "The file has errors: `errors` lists each as row, column, reason. "
        "A query that breaks its schema (an unknown `format`) is answered as every "
        "route's 422 is (ValidationProblem).",
        "content": {
            PROBLEM_JSON: {
                "schema": {
                    "anyOf": [
                        {"$ref": "#/components/schemas/ImportProblem"},
                        {"$ref": "#/components/schemas/ValidationProblem"},
                    ]
                }
            },
        },
    },
}


def _safe(text: str) -> str:
    """``text`` as an answer can carry it: whole when it can be, shorter when escapes of the
    file's control characters would make it longer than a text field."""
    shown = excerpt(text, limit=MAX_TEXT - 40)
    return shown if len(shown) <= MAX_TEXT else excerpt(text, limit=_QUOTED_TEXT)


_QUOTED_TEXT = (MAX_TEXT - 60) // 6
"""Characters of one message kept in an import's refusal, so that it still fits a text
field when every character had to be spelled as a six-character escape (``\\u0007``)
and the "... (N characters in all)" tail is added."""


def _run_import(
    kind: str,
    request_body: bytes,
    *,
    fmt: str,
    connection: Any,
    principal: Principal,
    audit: Any,
    projections: Any = None,
) -> Any:
    try:
        result = import_file(
            connection,
            kind=kind,
            data=request_body,
            fmt=fmt,
            audit=audit,
            models=ROW_MODELS,
            financial=principal.financial,
            visible_sites=principal.sites,
            projections=projections,
        )
    except ImportRefusedError as refused:
        problem = ImportProblem(
            title="Unprocessable Content",
            status=422,
            detail=_safe(str(refused)),
            # A header cell or a refused value is the file's text: it may hold control
            # characters or lone surrogates that no answer can carry (a 500 found by
            # schemathesis), so each is quoted as a refusal quotes any input.
            errors=[
                RowErrorOut(row=e.row, column=_safe(e.column), reason=_safe(e.reason))
                for e in refused.errors
            ],
            truncated=refused.truncated,
        )
        return JSONResponse(
            status_code=422, media_type=PROBLEM_JSON, content=problem.model_dump(mode="json")
        )
    except InvalidError as invalid:
        # A fault of the whole file (empty, not UTF-8, not CSV, too many rows) has no row to
        # name; it is still the one 422 shape the route promises, with ``errors`` empty.
        problem = ImportProblem(
            title="Unprocessable Content",
            status=422,
            detail=_safe(str(invalid)),
            errors=[],
            truncated=False,
        )
        return JSONResponse(
            status_code=422, media_type=PROBLEM_JSON, content=problem.model_dump(mode="json")
        )
    return _result(result)


def _result(result: ImportResult) -> ImportResultOut:
    return ImportResultOut.model_validate(
        {
            "kind": result.kind,
            "rows": result.rows,
            "created": result.created,
            "updated": result.updated,
            "unchanged": result.unchanged,
            "sha256": result.sha256,
        }
    )


def _import_route(kind: str) -> None:
    @router.post(
        f"{IMPORTS.removeprefix(API_ROOT)}/{kind}",
        dependencies=[Requires(IMPORT_ACTION[kind])],
        responses=_IMPORT_ANSWERS,
        openapi_extra=_FILE_BODY,
        name=f"import_{kind}",
        response_model=ImportResultOut,
        summary=f"Import {kind.replace('_', ' ')} from a CSV or XLSX file",
    )
    async def run(
        request: Request,
        *,
        connection: ConnDep,
        principal: PrincipalDep,
        audit: AuditDep,
        projections: ProjectionsDep,
        format: Format = "csv",
    ) -> Any:
        body = await request.body()
        from starlette.concurrency import run_in_threadpool  # noqa: PLC0415

        return await run_in_threadpool(
            _run_import,
            kind,
            body,
            fmt=format,
            connection=connection,
            principal=principal,
            audit=audit,
            projections=projections,
        )


def _export_route(kind: str, action: str) -> None:
    @router.get(
        f"{EXPORTS.removeprefix(API_ROOT)}/{kind}",
        dependencies=[Requires(action)],
        responses={200: {"content": {_MEDIA["csv"]: {}, _MEDIA["xlsx"]: {}}}},
        name=f"export_{kind}",
        summary=f"Export {kind} as a CSV or XLSX file",
    )
    def run(
        connection: ConnDep,
        principal: PrincipalDep,
        format: Format = "csv",
        site_id: Annotated[SiteId | None, Query(description="locations: one site")] = None,
    ) -> Response:
        if site_id is not None and not principal.sees_site(site_id):
            raise SiteOutOfScopeError(who=principal.label, site_id=site_id)
        header, rows = export_rows(connection, kind, financial=principal.financial, site_id=site_id)
        if kind == "locations" and principal.sites is not None:
            rows = [row for row in rows if row[0] in principal.sites]
        return Response(
            content=write_table(header, rows, format),
            media_type=_MEDIA[format],
            headers={"Content-Disposition": f'attachment; filename="{kind}.{format}"'},
        )


for _kind in IMPORT_KINDS:
    _import_route(_kind)
_export_route("items", "items.read")
_export_route("partners", "partners.read")
_export_route("locations", "locations.read")
