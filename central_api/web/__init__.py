"""The web console (控制台): server-rendered pages with htmx, served by central itself.

:func:`mount_console` adds the pages (``/console/...``), their static files (htmx, the
style sheet, a small script: all in this package, nothing from a CDN) and the console's
own answer to a refusal: a page in the user's language, or the login page for a request
that is not signed in, where the API answers problem details. See ``docs/console.md``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from central_api.api import route_index
from central_api.api.routes.auth import clear_session_cookies
from central_api.core.principal import Principal
from central_api.errors import CentralError
from central_api.web import i18n
from central_api.web.categories import pages as category_pages
from central_api.web.dashboard import pages as dashboard_pages
from central_api.web.feedback import pages as feedback_pages
from central_api.web.guide import router as guide_router
from central_api.web.inventory import pages as inventory_pages
from central_api.web.master import pages as master_pages
from central_api.web.periods import pages as period_pages
from central_api.web.purchasing import pages as purchasing_pages
from central_api.web.receiving import pages as receiving_pages
from central_api.web.reference import pages as reference_pages
from central_api.web.render import CONSOLE_ROOT, N_, STATIC_ROOT, gettext_for, render
from central_api.web.replenishment import pages as replenishment_pages
from central_api.web.reports import pages as report_pages
from central_api.web.routes import login_url, redirect, root_router, router
from central_api.web.sales import pages as sales_pages
from central_api.web.sales_docs import routers as sales_doc_routers
from central_api.web.transfer import pages as transfer_pages
from central_api.web.webhooks import pages as webhook_pages

STATIC_DIR = Path(__file__).parent / "static"

Handler = Callable[[Request, Any], Awaitable[Response] | Response]

_HEADLINES: dict[int, str] = {
    400: N_("This request could not be read."),
    403: N_("You may not do this. An administrator can grant it through a role."),
    404: N_("There is no such page or record."),
    405: N_("This page cannot be used that way."),
    409: N_("This clashes with what was saved meanwhile; nothing was changed."),
    412: N_("Someone changed this meanwhile; reload it and try again. Nothing was changed."),
    413: N_("That is more than central takes at once."),
    422: N_("Some of what was sent is not valid."),
    429: N_("Too many attempts. Wait a minute and try again."),
    503: N_("The database is not reachable. Try again shortly; nothing was changed."),
}
_UNEXPECTED = N_("Something went wrong on the server; nothing was changed.")


def mount_console(app: FastAPI) -> None:
    """Add the console to ``app``; call after the API's error handlers are installed.

    Its routers are added flat, as the API's are (``route_index.include_flat``).
    """
    for pages in (
        root_router,
        router,
        master_pages,
        transfer_pages,
        purchasing_pages,
        receiving_pages,
        sales_pages,
        *sales_doc_routers,
        reference_pages,
        category_pages,
        inventory_pages,
        replenishment_pages,
        period_pages,
        report_pages,
        dashboard_pages,
        feedback_pages,
        guide_router,
        webhook_pages,
    ):
        route_index.include_flat(app, pages)
    app.mount(STATIC_ROOT, StaticFiles(directory=STATIC_DIR), name="console-static")
    for kind in (CentralError, RequestValidationError, StarletteHTTPException, Exception):
        original = app.exception_handlers.get(kind)
        if original is not None:
            app.exception_handlers[kind] = _for_console(original)


def _is_console(request: Request) -> bool:
    path = request.url.path
    return path == CONSOLE_ROOT or path.startswith(f"{CONSOLE_ROOT}/")


def _for_console(original: Handler) -> Handler:
    """``original`` for the API; for a console page, the same answer as a page.

    The API's handler still runs first, so the refusal is logged (and a 500 gets its
    incident id) exactly as for the API; only what the browser is shown differs.
    """

    async def handle(request: Request, exc: Any) -> Response:
        answer = original(request, exc)
        response = await answer if isinstance(answer, Awaitable) else answer
        if not _is_console(request) or request.url.path.startswith(f"{STATIC_ROOT}/"):
            return response
        status = response.status_code
        if status == 401:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = login_url(here if request.method == "GET" else CONSOLE_ROOT)
            moved = redirect(request, target)
            clear_session_cookies(moved)
            return moved
        _ = gettext_for(i18n.language_of(request))
        principal = getattr(request.state, "principal", None)
        return render(
            request,
            "error.html",
            {
                "status": status,
                "headline": _(_HEADLINES.get(status, _UNEXPECTED)),
                "detail": _detail(response),
            },
            principal=principal if isinstance(principal, Principal) and principal.is_user else None,
            status_code=status,
            headers={k: v for k, v in response.headers.items() if k.lower() == "retry-after"},
        )

    return handle


def _detail(response: Response) -> str:
    """The API's own sentence, shown under the translated headline for the specifics."""
    try:
        body = json.loads(bytes(response.body))
    except (ValueError, AttributeError):
        return ""
    detail = body.get("message") or body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else ""
