"""The console's import and export page: master data as CSV or XLSX files.

An upload goes to ``/console/transfer/<kind>``, whose rule is the kind's own import
action, as the API's ``POST /api/v1/imports/<kind>`` (``items.import``,
``partners.import``, ``locations.import``); it calls the same ``import_file`` with the
same row models, the user's financial group and sites, and the request's audit context,
so a console import is checked, written all-or-nothing and audited exactly as the API's.
A refused file comes back as a table of every error (row, column, reason) under
translated headings; an accepted one as its counts. The page shows the upload's progress
(htmx's upload events) and then that central is checking and writing.

Exports are links to the API's own ``GET /api/v1/exports/<kind>`` (the session cookie
signs a GET in; no CSRF token is needed to read), shown for the kinds the user may read.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import SIGNED_IN, Requires
from central_api.api.routes.imports import EXPORTS, ROW_MODELS
from central_api.core.principal import Principal, PrincipalDep
from central_api.services.imports import IMPORT_ACTION, ImportRefusedError, import_file
from central_api.services.imports import KINDS as IMPORT_KINDS
from central_api.web import i18n
from central_api.web.forms import import_reason
from central_api.web.render import CONSOLE_ROOT, gettext_for, render

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

TRANSFER: Final = f"{CONSOLE_ROOT}/transfer"
KINDS: Final = ("items", "partners", "locations")
"""The kinds exported (opening stock is imported only: after that it is the ledger's)."""
READ_ACTION: Final = {
    "items": "items.read",
    "partners": "partners.read",
    "locations": "locations.read",
}
UPLOAD_PATHS: Final = tuple(f"{TRANSFER}/{kind}" for kind in IMPORT_KINDS)
"""Paths whose bodies may be as large as an API import's (``max_import_bytes``)."""


def _kinds(principal: Principal) -> tuple[list[str], list[str]]:
    """The kinds the user may import, and those they may export."""
    imports = [kind for kind in IMPORT_KINDS if principal.can(IMPORT_ACTION[kind])]
    exports = [kind for kind in KINDS if principal.can(READ_ACTION[kind])]
    return imports, exports


@pages.get("/transfer", dependencies=[SIGNED_IN])
def transfer_page(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """Signed in is enough to open it; it offers only what the user's roles allow, and
    each upload route checks its kind's import action itself."""
    imports, exports = _kinds(principal)
    return render(
        request,
        "transfer.html",
        {"imports": imports, "exports": exports, "exports_root": EXPORTS, "outcome": None},
        principal=principal,
    )


def _upload_route(kind: str) -> None:
    @pages.post(
        f"/transfer/{kind}",
        dependencies=[Requires(IMPORT_ACTION[kind])],
        name=f"console_import_{kind}",
    )
    async def upload(
        request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
    ) -> HTMLResponse:
        _ = gettext_for(i18n.language_of(request))
        posted = await request.form()
        upload = posted.get("file")
        outcome: dict[str, Any]
        status = 200
        if not isinstance(upload, UploadFile) or not upload.filename:
            outcome = {"problem": _("Choose a CSV or XLSX file first.")}
            status = 422
        else:
            name = upload.filename.lower()
            fmt = "xlsx" if name.endswith((".xlsx", ".xlsm")) else "csv"
            data = await upload.read()
            try:
                result = await run_in_threadpool(
                    import_file,
                    connection,
                    kind=kind,
                    data=data,
                    fmt=fmt,
                    audit=audit,
                    models=ROW_MODELS,
                    financial=principal.financial,
                    visible_sites=principal.sites,
                    projections=request.app.state.projections,
                )
            except ImportRefusedError as refused:
                outcome = {
                    "errors": [
                        (error.row, error.column, *import_reason(error.reason, _))
                        for error in refused.errors
                    ],
                    "truncated": refused.truncated,
                }
                status = 422
            else:
                outcome = {"result": result}
            outcome["filename"] = upload.filename
        outcome["kind"] = kind
        if request.headers.get("hx-request") == "true":
            return render(
                request,
                "transfer_outcome.html",
                {"outcome": outcome},
                principal=principal,
                status_code=status,
            )
        # Without scripts the form posts as a page: the page again, with the outcome.
        imports, exports = _kinds(principal)
        return render(
            request,
            "transfer.html",
            {"imports": imports, "exports": exports, "exports_root": EXPORTS, "outcome": outcome},
            principal=principal,
            status_code=status,
        )


for _kind in IMPORT_KINDS:
    _upload_route(_kind)
