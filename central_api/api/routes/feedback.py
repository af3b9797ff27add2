"""``/api/v1/feedback``: notes from the console's users, and the admin's inbox.

Sending needs only a signed-in user (``SIGNED_IN``): every member of staff may say what
troubles them. Everything else needs ``feedback.manage``, within the reader's sites. A
create takes an ``Idempotency-Key``; tag and resolve take it and ``If-Match``. Each
write is audited (``feedback.create``, ``.tag``, ``.resolve``), the summary's read as a
report (``report.read`` of ``feedback-summary``). ``docs/console.md`` ("Feedback").
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.documents import CallerDep, answer
from central_api.api.permissions import SIGNED_IN, Requires
from central_api.core.principal import PrincipalDep
from central_api.errors import InvalidError
from central_api.schemas.feedback import (
    FeedbackId,
    FeedbackIn,
    FeedbackOut,
    FeedbackPage,
    FeedbackStatus,
    Month,
    ResolveIn,
    SummaryOut,
    TagsIn,
)
from central_api.services import feedback as service
from central_api.services.report_files import csv_chunks, file_chunks, write_xlsx
from central_api.services.reports import record_read
from jxc.contract import Text
from jxc.paths import FEEDBACK, below_api_root

router = APIRouter(prefix=below_api_root(FEEDBACK), tags=["feedback"])

MANAGE = Requires("feedback.manage")

_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    403: {"description": "A screenshot that may show amounts, to a reader who sees none."},
    404: {"description": "No such note (or one of a site outside the reader's)."},
    409: {"description": "The note is resolved already."},
    412: {"description": "If-Match names a version that is no longer current."},
    413: {"description": "The screenshot is larger than central keeps."},
    422: {"description": "A field, the picture's type, a tag or the month is refused."},
}
_MEDIA: Final = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def language_of(request: Request) -> str:
    """The sender's console language, as the console would pick it."""
    from central_api.web import i18n  # noqa: PLC0415 (the console imports the API)

    return i18n.language_of(request).tag


@router.post("", dependencies=[SIGNED_IN], status_code=status.HTTP_201_CREATED, responses=_ERRORS)
def send_feedback(body: FeedbackIn, request: Request, call: CallerDep) -> FeedbackOut:
    """Send a note about a page, with a screenshot if you like; any signed-in user may."""
    screenshot = None
    if body.screenshot_base64:
        try:
            screenshot = base64.b64decode(body.screenshot_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidError("screenshot_base64: not base64") from None
    principal = call.principal
    return call.run(
        lambda: service.send_feedback(
            call.connection,
            page=body.page,
            note=body.note,
            sender=principal.name,
            roles=sorted(principal.roles),
            sites=principal.sites,
            financial=principal.financial,
            language=language_of(request),
            screenshot=screenshot,
            audit=call.audit,
            claim=call.claim,
        ),
        service.get_feedback,
        FeedbackOut,
    )


@router.get("", dependencies=[MANAGE], responses=_ERRORS)
def read_feedback_list(
    *,
    connection: ConnDep,
    principal: PrincipalDep,
    status: Annotated[FeedbackStatus | None, Query()] = None,
    tag: Annotated[Text | None, Query(max_length=24)] = None,
    month: Annotated[Month | None, Query()] = None,
    after: Annotated[FeedbackId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> FeedbackPage:
    """The inbox, newest first, within your sites."""
    found, next_after = service.list_feedback(
        connection,
        visible=principal.sites,
        status=status,
        tag=tag,
        month=month,
        after=after,
        limit=limit,
    )
    return FeedbackPage(
        entries=[FeedbackOut.model_validate(each) for each in found], next_after=next_after
    )


@router.get("/summary", dependencies=[MANAGE], responses=_ERRORS)
async def read_summary(
    *,
    request: Request,
    audit: AuditDep,
    principal: PrincipalDep,
    month: Annotated[Month, Query()],
    format: Annotated[Literal["json", "csv", "xlsx"], Query()] = "json",
) -> Any:
    """Notes sent in a month (UTC): in all, by page, by tag; each open / resolved."""
    engine: Engine = request.app.state.engine

    def read() -> service.Summary:
        with engine.connect() as connection:
            found = service.monthly_summary(connection, month=month, visible=principal.sites)
            record_read(
                connection,
                audit,
                name="feedback-summary",
                site_id=None,
                filters={"month": month},
                fmt=format,
                rows=len(found.rows),
            )
            return found

    summary = await run_in_threadpool(read)
    if format == "json":
        return SummaryOut.model_validate(summary)
    return await summary_file(request, summary, format)


async def summary_file(request: Request, summary: service.Summary, fmt: str) -> Response:
    """The summary as CSV or XLSX, headings in the reader's language."""
    from central_api.web import i18n  # noqa: PLC0415
    from central_api.web.render import gettext_for  # noqa: PLC0415

    _ = gettext_for(i18n.language_of(request))
    columns = service.SUMMARY_COLUMNS
    headings = [_(column.label) for column in columns]
    rows = service.summary_rows(summary)
    name = f"feedback-{summary.month}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}.{fmt}"'}
    if fmt == "csv":
        return StreamingResponse(
            csv_chunks(headings, columns, [rows]), media_type=_MEDIA["csv"], headers=disposition
        )
    written = await run_in_threadpool(write_xlsx, name, headings, columns, [rows])
    size = written.seek(0, 2)
    written.seek(0)
    return StreamingResponse(
        file_chunks(written),
        media_type=_MEDIA["xlsx"],
        headers={**disposition, "Content-Length": str(size)},
    )


@router.get("/{feedback_id}", dependencies=[MANAGE], responses=_ERRORS)
def read_feedback(
    feedback_id: FeedbackId, connection: ConnDep, principal: PrincipalDep, response: Response
) -> FeedbackOut:
    found = service.get_feedback(connection, feedback_id, visible=principal.sites)
    return answer(response, found, FeedbackOut)


@router.get(
    "/{feedback_id}/screenshot",
    dependencies=[MANAGE],
    responses={**_ERRORS, 200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}}},
    response_class=Response,
)
def read_screenshot(
    feedback_id: FeedbackId, connection: ConnDep, principal: PrincipalDep
) -> Response:
    """The picture sent with a note, as it was sent."""
    return screenshot_response(
        service.screenshot_of(
            connection, feedback_id, visible=principal.sites, financial=principal.financial
        )
    )


def screenshot_response(found: service.Screenshot) -> Response:
    """A stored picture, never sniffed as anything else, never cached by a shared cache."""
    return Response(
        found.content,
        media_type=found.media_type,
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
            "Cache-Control": "private, no-store",
        },
    )


@router.post("/{feedback_id}/tags", dependencies=[MANAGE], responses=_ERRORS)
def tag_feedback(*, feedback_id: FeedbackId, body: TagsIn, call: CallerDep) -> FeedbackOut:
    """Set the note's tags (they replace the ones it had)."""
    return call.run(
        lambda: service.tag_feedback(
            call.connection,
            feedback_id,
            tags=body.tags,
            visible=call.principal.sites,
            if_match=call.if_match,
            audit=call.audit,
            claim=call.claim,
        ),
        lambda connection, found: service.get_feedback(
            connection, found, visible=call.principal.sites
        ),
        FeedbackOut,
    )


@router.post("/{feedback_id}/resolve", dependencies=[MANAGE], responses=_ERRORS)
def resolve_feedback(*, feedback_id: FeedbackId, body: ResolveIn, call: CallerDep) -> FeedbackOut:
    """Close the note with what was done about it."""
    return call.run(
        lambda: service.resolve_feedback(
            call.connection,
            feedback_id,
            resolution=body.resolution,
            actor=call.principal.name,
            visible=call.principal.sites,
            if_match=call.if_match,
            audit=call.audit,
            claim=call.claim,
        ),
        lambda connection, found: service.get_feedback(
            connection, found, visible=call.principal.sites
        ),
        FeedbackOut,
    )
