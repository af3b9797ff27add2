"""The user guide at ``/guide/<tag>/``, and the help link every console page carries.

The guide is a static site that ``make docs`` builds from ``docs/guide`` into
``Settings.guide_dir`` (``var/guide``, one folder per language tag). Central serves those
files as they are, to anyone: the guide holds no company data, and a person who cannot
sign in is the one who most needs to read how. A guide that was never built is answered
with a page saying how to build it, not a bare 404.

:data:`CHAPTERS` maps each console page to the chapter that explains it, so the help link
of a page opens the guide where the page is described, in the page's language; a page of
no chapter opens the index. A test checks that every console page of the rule table lands
on a chapter that exists in both languages.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from central_api.api.deps import SettingsDep
from central_api.api.permissions import PUBLIC
from central_api.web import i18n
from jxc import guide
from jxc.guide import GUIDE_ROOT, INDEX

router = APIRouter(prefix=GUIDE_ROOT, include_in_schema=False)

CHAPTERS: Final[dict[str, str]] = {
    # master data and people: the admin's chapter
    "/console/items": "roles/admin",
    "/console/categories": "roles/admin",
    "/console/partners": "roles/admin",
    "/console/sites": "roles/admin",
    "/console/reference": "roles/admin",
    "/console/transfer": "roles/admin",
    "/console/users": "roles/admin",
    "/console/roles": "roles/admin",
    "/console/feedback": "roles/admin",
    "/console/webhooks": "roles/admin",
    # purchasing
    "/console/requisitions": "roles/store-manager",
    "/console/purchase-orders": "roles/purchaser",
    "/console/replenishment": "roles/purchaser",
    "/console/purchase-exceptions": "tasks/exceptions",
    "/console/receipts": "tasks/receive",
    "/console/edge-cartons": "tasks/receive",
    "/console/po-receiving": "tasks/receive",
    "/console/purchase-returns": "tasks/exceptions",
    "/console/supplier-invoices": "roles/finance",
    # sales
    "/console/sales-orders": "roles/sales",
    "/console/price-lists": "roles/sales",
    "/console/availability": "roles/sales",
    "/console/pick-lists": "tasks/pick",
    "/console/shipments": "tasks/pick",
    "/console/customer-returns": "tasks/return",
    "/console/sales-invoices": "roles/finance",
    "/console/receivables-ageing": "roles/finance",
    # inventory
    "/console/other-receipts": "tasks/exceptions",
    "/console/other-issues": "tasks/exceptions",
    "/console/write-offs": "tasks/exceptions",
    "/console/transfers": "tasks/transfer",
    "/console/stock-counts": "tasks/count",
    "/console/count": "tasks/count",
    "/console/alerts": "tasks/exceptions",
    "/console/recall": "tasks/exceptions",
    "/console/periods": "tasks/month-close",
    # reports and the dashboard
    "/console/reports/retail-takings": "tasks/counter",
    "/console/reports/sync-lag": "tasks/offline-recovery",
    "/console/reports/gross-margin": "roles/finance",
    "/console/reports/count-accuracy": "tasks/count",
    "/console/reports/purchase-price-variance": "roles/finance",
    "/console/reports/receivables-ageing": "roles/finance",
    "/console/reports/turnover": "roles/finance",
    "/console/reports": "roles/store-manager",
    "/console/dashboard": "roles/store-manager",
}
"""Console path (a page and every page below it) → guide chapter; the longest match wins."""


def chapter_for(path: str) -> str:
    """The chapter describing the console page at ``path``, else the guide's index."""
    path = path.split("?", maxsplit=1)[0].rstrip("/")
    best = ""
    for prefix in CHAPTERS:
        if (path == prefix or path.startswith(f"{prefix}/")) and len(prefix) > len(best):
            best = prefix
    return CHAPTERS[best] if best else INDEX


def help_url(path: str, tag: str) -> str:
    """The help link of the console page at ``path`` for a reader of language ``tag``."""
    return guide.chapter_url(tag, chapter_for(path))


@router.get("", dependencies=[PUBLIC])
@router.get("/", dependencies=[PUBLIC])
def guide_home(request: Request) -> RedirectResponse:
    """The guide in the reader's language: the console's choice, cookie or browser's."""
    tag = i18n.language_of(request).tag
    return RedirectResponse(guide.chapter_url(tag, INDEX), status_code=307)


@router.get("/{path:path}", dependencies=[PUBLIC])
def guide_file(path: str, settings: SettingsDep) -> Response:
    """A file of the built guide, never one outside its folder."""
    root = settings.guide_dir.resolve()
    if not root.is_dir():
        return _not_built(root)
    wanted = (root / path).resolve()
    if not wanted.is_relative_to(root):
        return HTMLResponse("There is no such page in the guide.", status_code=404)
    if wanted.is_dir():
        wanted = wanted / "index.html"
    if not wanted.is_file():
        return HTMLResponse("There is no such page in the guide.", status_code=404)
    media_type = mimetypes.guess_type(wanted.name)[0] or "application/octet-stream"
    return FileResponse(wanted, media_type=media_type)


def _not_built(root: Path) -> HTMLResponse:
    """Say how to build the guide, in both languages (which one the reader wants is moot:
    this is for whoever runs central)."""
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>jxc guide</title>"
        "<p>培训手册尚未构建。请在安装目录运行 <code>make docs</code>。</p>"
        "<p>The user guide is not built on this central. Run <code>make docs</code> in the "
        f"checkout (it writes {root.name}/), or set JXC_CENTRAL_GUIDE_DIR to a built copy.</p>",
        status_code=404,
    )
