"""The console's feedback channel: the button's form (every signed-in user), the admin's
inbox with tags and resolutions, and the monthly summary as a page, CSV or XLSX.

The button in the layout links to the form with the page it was pressed on; the form
takes a note and, if the user chooses, a picture file (a screenshot the phone or PC
made: every browser can attach a file, no capture script to break). It is posted by
htmx as ``multipart/form-data`` with the session's CSRF header, like every console
form. A refused picture (type, size) comes back next to its field in the user's
language, with nothing stored. The rules are the API's (``central_api.api.routes.
feedback``), through the same service. ``docs/console.md`` ("Feedback").
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import SIGNED_IN, Requires
from central_api.api.routes.feedback import screenshot_response, summary_file
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import InvalidError, TooLargeError
from central_api.schemas.feedback import FeedbackId
from central_api.services import feedback as service
from central_api.services.documents import MAX_PAGE
from central_api.services.idempotency import IdempotentReplay
from central_api.services.reports import record_read
from central_api.web import i18n
from central_api.web.render import CONSOLE_ROOT, N_, NAVIGATION, NavEntry, gettext_for, render
from central_api.web.routes import form_claim, local_target, redirect

pages = APIRouter(prefix=CONSOLE_ROOT, include_in_schema=False)

FORM: Final = f"{CONSOLE_ROOT}/feedback/new"
INBOX: Final = f"{CONSOLE_ROOT}/feedback"

NAVIGATION.append(NavEntry(INBOX, N_("Feedback inbox"), "feedback.manage"))

STATUS_LABELS: Final[dict[str, str]] = {"open": N_("Open"), "resolved": N_("Resolved")}
KIND_LABELS: Final[dict[str, str]] = {
    "all": N_("All notes"),
    "page": N_("Page"),
    "tag": N_("Tag"),
}
COLUMN_LABELS: Final = (
    N_("Grouped by"),
    N_("Page or tag"),
    N_("Notes"),
    N_("Open"),
    N_("Resolved"),
)
"""The summary file's headings (``service.SUMMARY_COLUMNS``), here for the catalogue."""

_FIELD_MESSAGES: Final[dict[str, str]] = {
    "note": N_("Say what happened or what you would like, in at most 2000 characters."),
    "screenshot": N_("The picture must be a PNG, JPEG or WebP file."),
    "page": N_("This page cannot be named; send the note from the page itself."),
}
_TOO_LARGE: Final = N_("The picture is larger than 700 kB; send a smaller one.")


def _posted(posted: Any, name: str, limit: int = 200) -> str:
    value = posted.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _month_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@pages.get("/feedback/new", dependencies=[SIGNED_IN])
def feedback_form(
    request: Request,
    principal: PrincipalDep,
    page: Annotated[str, Query(max_length=2000)] = CONSOLE_ROOT,
    sent: Annotated[FeedbackId | None, Query()] = None,
) -> HTMLResponse:
    """The form the layout's button opens; ``sent`` thanks for the note just stored."""
    return _form(request, principal, {"page": page, "note": ""}, {}, sent=sent)


def _form(
    request: Request,
    principal: Principal,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    sent: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    back = local_target(form["page"], CONSOLE_ROOT)
    return render(
        request,
        "feedback_form.html",
        {
            "form": form,
            "errors": errors,
            "sent": sent,
            "back": back,
            "roles": sorted(principal.roles),
            "key": str(uuid.uuid4()),
            "max_note": service.MAX_NOTE,
        },
        principal=principal,
        status_code=status_code,
    )


@pages.post("/feedback/new", dependencies=[SIGNED_IN])
async def send_feedback_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> Response:
    """Store the note, then show the form again with thanks (a double tap stores one)."""
    posted = await request.form()
    form = {
        "page": _posted(posted, "page", 2000),
        "note": _posted(posted, "note", service.MAX_NOTE + 1000),
    }
    upload = posted.get("screenshot")
    picture = (
        await upload.read(service.MAX_SCREENSHOT_BYTES + 1)
        if isinstance(upload, UploadFile)
        else b""
    )
    # The key's fingerprint is what was sent, not the raw body: a multipart body has a
    # new boundary at each send, so a double tap would otherwise look like a new note.
    fields = "\0".join((form["page"], form["note"], hashlib.sha256(picture).hexdigest())).encode()
    _ = gettext_for(i18n.language_of(request))
    errors: dict[str, str] = {}
    try:
        made = service.send_feedback(
            connection,
            page=form["page"] or CONSOLE_ROOT,
            note=form["note"],
            sender=principal.name,
            roles=sorted(principal.roles),
            sites=principal.sites,
            financial=principal.financial,
            language=i18n.language_of(request).tag,
            screenshot=picture or None,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), fields),
        )
        feedback_id = made.feedback_id
    except IdempotentReplay as replay:
        feedback_id = replay.resource_id
    except TooLargeError:
        errors["screenshot"] = _(_TOO_LARGE)
    except InvalidError as refused:
        field = str(refused).split(":", 1)[0]
        errors[field if field in _FIELD_MESSAGES else "note"] = _(
            _FIELD_MESSAGES.get(field, _FIELD_MESSAGES["note"])
        )
    if errors:  # 422 for every refusal: htmx swaps it, so the note typed stays
        return _form(request, principal, form, errors, status_code=422)
    query = urlencode({"page": form["page"] or CONSOLE_ROOT, "sent": feedback_id})
    return redirect(request, f"{FORM}?{query}")


@pages.get("/feedback", dependencies=[Requires("feedback.manage")])
def inbox_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    *,
    status: Annotated[str, Query(max_length=20)] = "open",
    tag: Annotated[str, Query(max_length=24)] = "",
    month: Annotated[str, Query(max_length=7)] = "",
) -> HTMLResponse:
    """The notes within the admin's sites, newest first; open ones by default. A status,
    tag or month the page does not know is ignored rather than refused."""
    chosen = status if status in STATUS_LABELS else ""
    word = tag.strip().lower() if service.TAG_PATTERN.fullmatch(tag.strip().lower()) else ""
    try:
        service.month_range(month)
        in_month = month
    except InvalidError:
        in_month = ""
    found, _after = service.list_feedback(
        connection,
        visible=principal.sites,
        status=chosen or None,
        tag=word or None,
        month=in_month or None,
        limit=MAX_PAGE,
    )
    return render(
        request,
        "feedback_inbox.html",
        {
            "entries": found,
            "status": chosen,
            "tag": word,
            "month": in_month,
            "this_month": _month_now(),
            "status_labels": STATUS_LABELS,
            "suggested_tags": service.SUGGESTED_TAGS,
            "key": str(uuid.uuid4()),
        },
        principal=principal,
    )


@pages.get("/feedback/screenshot", dependencies=[Requires("feedback.manage")])
def screenshot_page(
    feedback_id: Annotated[FeedbackId, Query(alias="id")],
    connection: ConnDep,
    principal: PrincipalDep,
) -> Response:
    return screenshot_response(
        service.screenshot_of(
            connection, feedback_id, visible=principal.sites, financial=principal.financial
        )
    )


async def _command(request: Request) -> tuple[bytes, Any, str | None]:
    raw = await request.body()
    posted = await request.form()
    version = _posted(posted, "version", 20)
    return raw, posted, (f'"{version}"' if version.isdigit() else None)


@pages.post("/feedback/tag", dependencies=[Requires("feedback.manage")])
async def tag_page(
    request: Request,
    feedback_id: Annotated[FeedbackId, Query(alias="id")],
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    raw, posted, if_match = await _command(request)
    with contextlib.suppress(IdempotentReplay):
        service.tag_feedback(
            connection,
            feedback_id,
            tags=[_posted(posted, "tags", 400)],
            visible=principal.sites,
            if_match=if_match,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        )
    return redirect(request, _back(posted))


@pages.post("/feedback/resolve", dependencies=[Requires("feedback.manage")])
async def resolve_page(
    request: Request,
    feedback_id: Annotated[FeedbackId, Query(alias="id")],
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
) -> Response:
    raw, posted, if_match = await _command(request)
    resolution = _posted(posted, "resolution", service.MAX_RESOLUTION)
    _ = gettext_for(i18n.language_of(request))
    if not resolution:
        raise InvalidError(_("Say what was done."))
    with contextlib.suppress(IdempotentReplay):
        service.resolve_feedback(
            connection,
            feedback_id,
            resolution=resolution,
            actor=principal.name,
            visible=principal.sites,
            if_match=if_match,
            audit=audit,
            claim=form_claim(request, principal, _posted(posted, "idempotency_key"), raw),
        )
    return redirect(request, _back(posted))


def _back(posted: Any) -> str:
    """The inbox as it was filtered when the button was pressed."""
    query = {k: _posted(posted, k, 24) for k in ("status", "tag", "month")}
    kept = urlencode({k: v for k, v in query.items() if v})
    return f"{INBOX}?{kept}" if kept else INBOX


@pages.get("/feedback/summary", dependencies=[Requires("feedback.manage")])
async def summary_page(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    month: Annotated[str, Query(max_length=7)] = "",
    format: Annotated[Literal["html", "csv", "xlsx"], Query()] = "html",
) -> Response:
    """A month's count by page and by tag, open and resolved; the same as a file."""
    chosen = month or _month_now()
    engine = request.app.state.engine

    def read() -> service.Summary:
        with engine.connect() as connection:
            found = service.monthly_summary(connection, month=chosen, visible=principal.sites)
            record_read(
                connection,
                audit,
                name="feedback-summary",
                site_id=None,
                filters={"month": chosen},
                fmt=format,
                rows=len(found.rows),
            )
            return found

    summary = await run_in_threadpool(read)
    if format != "html":
        return await summary_file(request, summary, format)
    return render(
        request,
        "feedback_summary.html",
        {"summary": summary, "kind_labels": KIND_LABELS},
        principal=principal,
    )
