"""``/api/v1/reports/...``: the report centre (报表中心), each report as JSON, CSV or XLSX.

``?format=json`` (the default) answers :class:`ReportOut`; ``csv`` streams the rows as
they are read; ``xlsx`` writes a workbook to a temporary file (flat memory) and streams
it with its length, so the browser shows the download's progress. File headings are in
the reader's console language; JSON labels are the English msgids.

Who may read what, checked here, never only by the page that links it:

* stock on hand, movements, slow-moving stock, expiry, sync lag and the stock-out rate:
  ``stock.read``; the value columns only for roles with the financial field group (the
  service leaves them out otherwise); count accuracy: ``stock_count.read``;
* gross margin, turnover and counter takings: ``valuation.read`` **and** the financial
  group, since every figure is money (as ``GET /valuation``); receivables ageing:
  ``receivable.read`` and the group; purchase price variance: ``supplier_invoice.read``
  and the group;
* a user limited to some sites reads only those: a ``site_id`` outside them is a 403,
  and without one the others are left out.

The routes are made from the table in :mod:`central_api.api.report_specs` (one spec per
report: filters, columns, service call), which the console's pages are made from too.

Every read is an audit entry (``report.read``: the report, its filters, the format and
how many rows), as valuation reads are: who looked at, or took away, the stock and margin
figures is worth keeping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from central_api.api.auditing import AuditDep
from central_api.api.permissions import Requires
from central_api.api.report_specs import SPECS, Reader, ReportSpec
from central_api.core.principal import Principal, PrincipalDep
from central_api.schemas.reports import ReportColumnOut, ReportEntryOut, ReportOut
from central_api.services import reports as service
from central_api.services.audit import AuditContext
from central_api.services.report_files import csv_chunks, file_chunks, text_of, write_xlsx
from central_api.services.valuation import settle_for_reading
from jxc.paths import REPORTS, below_api_root

router = APIRouter(prefix=below_api_root(REPORTS), tags=["reports"])

Format = Literal["json", "csv", "xlsx"]
FormatQuery = Annotated[
    Format, Query(description="json (default), csv (UTF-8, streamed) or xlsx (one sheet)")
]
_MEDIA: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "content": {_MEDIA["csv"]: {}, _MEDIA["xlsx"]: {}},
        "description": "the report (JSON), or its file with ?format=csv or xlsx",
    },
    403: {"description": "The site is outside the caller's sites, or no financial group."},
    422: {"description": "A filter is not valid."},
}

STOCK_READ = Requires("stock.read")


def _json(report: service.Report) -> ReportOut:
    return ReportOut(
        report=report.name,
        columns=[
            ReportColumnOut(key=c.key, label=c.label, kind=c.kind, financial=c.financial)
            for c in report.columns
        ],
        rows=[
            {
                key: value
                if isinstance(value, int) and not isinstance(value, bool)
                else (None if value is None else text_of(value))
                for key, value in row.items()
            }
            for row in report.rows
        ],
        totals={key: text_of(value) for key, value in report.totals.items()},
        next_after=report.next_after,
    )


async def _serve(
    request: Request,
    audit: AuditDep,
    *,
    name: str,
    fmt: Format,
    site_id: str | None,
    filters: dict[str, Any],
    build: Callable[[Connection], service.Report],
    every_page: Callable[[Connection], Iterable[service.Report]] | None = None,
    columns: Sequence[service.Column] | None = None,
) -> Any:
    """Read the report, write its audit entry, answer it in ``fmt``.

    ``every_page`` (a paged report's export) is walked on its own connection as the file
    is written; ``columns`` are then the file's columns, known before the first page."""
    engine: Engine = request.app.state.engine

    def entry(connection: Connection, rows: int | None) -> None:
        service.record_read(
            connection, audit, name=name, site_id=site_id, filters=filters, fmt=fmt, rows=rows
        )

    if fmt == "json" or every_page is None:

        def read() -> service.Report:
            with engine.connect() as connection:
                settle_for_reading(connection)
                report = build(connection)
                entry(connection, len(report.rows))
            return report

        report = await run_in_threadpool(read)
        if fmt == "json":
            return _json(report)
        return await _file(request, name, fmt, report.columns, lambda: iter([report.rows]))

    def audited() -> None:
        with engine.connect() as connection:
            entry(connection, None)

    await run_in_threadpool(audited)
    paged = every_page
    assert columns is not None

    def pages() -> Iterator[Sequence[dict[str, Any]]]:
        with engine.connect() as connection:
            settle_for_reading(connection)
            for page in paged(connection):
                yield page.rows

    return await _file(request, name, fmt, columns, pages)


async def _file(
    request: Request,
    name: str,
    fmt: Format,
    columns: Sequence[service.Column],
    pages: Callable[[], Iterable[Sequence[dict[str, Any]]]],
) -> Response:
    # The console's catalogue, imported here: the console imports the API's modules.
    from central_api.web import i18n  # noqa: PLC0415
    from central_api.web.render import gettext_for  # noqa: PLC0415

    _ = gettext_for(i18n.language_of(request))
    headings = [_(column.label) for column in columns]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    disposition = {"Content-Disposition": f'attachment; filename="{name}-{stamp}.{fmt}"'}
    if fmt == "csv":
        return StreamingResponse(
            csv_chunks(headings, columns, pages()), media_type=_MEDIA["csv"], headers=disposition
        )
    written = await run_in_threadpool(write_xlsx, name, headings, columns, pages())
    size = written.seek(0, 2)
    written.seek(0)
    return StreamingResponse(
        file_chunks(written),
        media_type=_MEDIA["xlsx"],
        headers={**disposition, "Content-Length": str(size)},
    )


@router.get("", dependencies=[STOCK_READ])
async def list_reports(principal: PrincipalDep) -> list[ReportEntryOut]:
    """The reports the caller may read, each with its path (``?format=`` on each)."""
    return [
        ReportEntryOut(
            name=spec.name,
            path=f"{REPORTS}/{spec.name}",
            financial_only=spec.money_only,
            action=spec.action,
        )
        for spec in SPECS
        if spec.may_read(principal)
    ]


_NOT_AUDITED: Final = ("site", "limit")
"""Filter kinds the entry does not list: the site is the entry's own field; the page size
says nothing of what was read."""


def _route(spec: ReportSpec) -> None:
    """``GET /reports/<name>``: the spec's filters as typed query parameters (the
    signature FastAPI reads is made from them), the spec's checks, the read, its audit
    entry and the answer in the format asked for."""

    async def endpoint(
        request: Request,
        principal: Principal,
        audit: AuditContext,
        format: Format = "json",
        **given: Any,
    ) -> Any:
        site_id = given.get("site_id")
        spec.check(principal, site_id)
        values = {f.name: f.from_api(given[f.name]) for f in spec.filters}
        reader = Reader.of(principal)
        paged = spec.every_page
        return await _serve(
            request,
            audit,
            name=spec.name,
            fmt=format,
            site_id=site_id,
            filters={f.name: values[f.name] for f in spec.filters if f.kind not in _NOT_AUDITED},
            build=lambda connection: spec.build(connection, reader, values),
            every_page=None
            if paged is None
            else lambda connection: paged(connection, reader, values),
            columns=service.visible_columns(spec.columns, reader.financial),
        )

    keyword = inspect.Parameter.KEYWORD_ONLY
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", keyword, annotation=Request),
            inspect.Parameter("principal", keyword, annotation=PrincipalDep),
            inspect.Parameter("audit", keyword, annotation=AuditDep),
            *(
                inspect.Parameter(
                    f.name,
                    keyword,
                    annotation=f.annotation(),
                    default=inspect.Parameter.empty if f.required else f.default,
                )
                for f in spec.filters
            ),
            inspect.Parameter("format", keyword, annotation=FormatQuery, default="json"),
        ],
        return_annotation=ReportOut,
    )
    endpoint.__name__ = spec.name.replace("-", "_")
    endpoint.__doc__ = spec.doc
    router.get(f"/{spec.name}", dependencies=[Requires(spec.action)], responses=_RESPONSES)(
        endpoint
    )


for _spec in SPECS:
    _route(_spec)
