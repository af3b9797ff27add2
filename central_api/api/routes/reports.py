"""``/api/v1/reports/...``: the report centre (报表中心), each report as JSON, CSV or XLSX.

``?format=json`` (the default) answers :class:`ReportOut`; ``csv`` streams the rows as
they are read; ``xlsx`` writes a workbook to a temporary file (flat memory) and streams
it with its length, so the browser shows the download's progress. File headings are in
the reader's console language; JSON labels are the English msgids.

Who may read what, checked here, never only by the page that links it:

* stock on hand, movements, slow-moving stock, expiry and sync lag: ``stock.read``;
  the value columns only for roles with the financial field group (the service leaves
  them out otherwise);
* gross margin, turnover and counter takings: ``valuation.read`` **and** the financial
  group, since every figure is money (as ``GET /valuation``);
* a user limited to some sites reads only those: a ``site_id`` outside them is a 403,
  and without one the others are left out.

Every read is an audit entry (``report.read``: the report, its filters, the format and
how many rows), as valuation reads are: who looked at, or took away, the stock and margin
figures is worth keeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, Engine
from starlette.concurrency import run_in_threadpool

from central_api.api.auditing import AuditDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, SiteOutOfScopeError
from central_api.schemas.reports import ReportColumnOut, ReportEntryOut, ReportOut
from central_api.services import reports as service
from central_api.services.report_files import csv_chunks, file_chunks, text_of, write_xlsx
from jxc.contract import Code, EventKind, SiteId, Text
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
MARGIN_READ = Requires("valuation.read")


def _check_site(principal: Principal, site_id: str | None) -> None:
    if site_id is not None and not principal.sees_site(site_id):
        raise SiteOutOfScopeError(who=principal.label, site_id=site_id)


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


_CATALOGUE: Final = (
    ("stock-on-hand", False, "stock.read"),
    ("movements", False, "stock.read"),
    ("gross-margin", True, "valuation.read"),
    ("slow-moving", False, "stock.read"),
    ("expiry", False, "stock.read"),
    ("turnover", True, "valuation.read"),
    ("retail-takings", True, "valuation.read"),
    ("sync-lag", False, "stock.read"),
)


@router.get("", dependencies=[STOCK_READ])
async def list_reports(principal: PrincipalDep) -> list[ReportEntryOut]:
    """The reports the caller may read, each with its path (``?format=`` on each)."""
    return [
        ReportEntryOut(name=name, path=f"{REPORTS}/{name}", financial_only=money, action=action)
        for name, money, action in _CATALOGUE
        if principal.can(action) and (principal.financial or not money)
    ]


@router.get("/stock-on-hand", dependencies=[STOCK_READ], responses=_RESPONSES)
async def stock_on_hand(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site_id: Annotated[SiteId | None, Query()] = None,
    item: Annotated[Code | None, Query()] = None,
    location: Annotated[Code | None, Query()] = None,
    lot: Annotated[
        Text | None, Query(max_length=40, description='"" for stock kept without a lot')
    ] = None,
    as_of: Annotated[
        datetime | None,
        Query(description="the stock as it was at this moment (UTC if no offset); omit: now"),
    ] = None,
    format: FormatQuery = "json",
) -> ReportOut:
    """库存明细: on hand per (site, location, item, lot), now or at a past moment (from
    the ledger by ``occurred_at``), with its value for a financial reader."""
    _check_site(principal, site_id)
    chosen = service.StockFilter(
        site_id=site_id, item=item, location=location, lot=lot, visible=principal.sites
    )
    moment = service.checked_moment(as_of, "as_of")
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="stock-on-hand",
        fmt=format,
        site_id=site_id,
        filters={"item": item, "location": location, "lot": lot, "as_of": moment},
        build=lambda connection: service.stock_on_hand(
            connection, chosen, as_of=moment, financial=principal.financial
        ),
    )


@router.get("/movements", dependencies=[STOCK_READ], responses=_RESPONSES)
async def movements(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site_id: Annotated[SiteId | None, Query()] = None,
    item: Annotated[Code | None, Query()] = None,
    kind: Annotated[EventKind | None, Query()] = None,
    location: Annotated[Code | None, Query()] = None,
    doc_id: Annotated[Code | None, Query(description="the document's id, e.g. SO000012")] = None,
    since: Annotated[datetime | None, Query(description="occurred from (UTC if no offset)")] = None,
    until: Annotated[datetime | None, Query(description="occurred before")] = None,
    after: Annotated[
        str | None, Query(max_length=200, description="next_after of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    format: FormatQuery = "json",
) -> ReportOut:
    """进出库流水: movements of both ledgers in the order valuation follows, a page at a
    time (an export has every page), with each one's cost for a financial reader."""
    _check_site(principal, site_id)
    chosen = service.MovementFilter(
        site_id=site_id,
        item=item,
        kind=None if kind is None else kind.value,
        location=location,
        doc_id=doc_id,
        since=service.checked_moment(since, "since"),
        until=service.checked_moment(until, "until"),
    )
    if after is not None:
        service.decode_cursor(after)  # a bad cursor is a 422 before anything is read
    financial, visible = principal.financial, principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="movements",
        fmt=format,
        site_id=site_id,
        filters={
            "item": item,
            "kind": chosen.kind,
            "location": location,
            "doc_id": doc_id,
            "since": chosen.since,
            "until": chosen.until,
            "after": after,
        },
        build=lambda connection: service.movements(
            connection, chosen, after=after, limit=limit, visible=visible, financial=financial
        ),
        every_page=lambda connection: service.iter_movements(
            connection, chosen, visible=visible, financial=financial
        ),
        columns=service.visible_columns(service.MOVEMENT_COLUMNS, financial),
    )


@router.get("/gross-margin", dependencies=[MARGIN_READ], responses=_RESPONSES)
async def gross_margin(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    by: Annotated[
        Literal["item", "category", "customer", "site", "month"],
        Query(description="what each row sums"),
    ] = "item",
    since: Annotated[date | None, Query(description="invoice date from")] = None,
    until: Annotated[date | None, Query(description="invoice date to (inclusive)")] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    format: FormatQuery = "json",
) -> ReportOut:
    """毛利分析: revenue of sales invoices (before tax) against the cost of goods of the
    shipments they bill, and the stores' counter sales less refunds against the cost of
    goods of the same events, largest margin first."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    _check_site(principal, site_id)
    visible = principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="gross-margin",
        fmt=format,
        site_id=site_id,
        filters={"by": by, "since": since, "until": until},
        build=lambda connection: service.gross_margin(
            connection, by=by, since=since, until=until, site_id=site_id, visible=visible
        ),
    )


@router.get("/slow-moving", dependencies=[STOCK_READ], responses=_RESPONSES)
async def slow_moving(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    days: Annotated[
        int, Query(ge=1, le=36_500, description="no movement out in this many days")
    ] = 90,
    on: Annotated[
        date | None, Query(description="counted to the end of this day; omit: now")
    ] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    format: FormatQuery = "json",
) -> ReportOut:
    """呆滞库存: what is on hand and has not gone out for ``days`` days (or never), with
    its value for a financial reader."""
    _check_site(principal, site_id)
    financial, visible = principal.financial, principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="slow-moving",
        fmt=format,
        site_id=site_id,
        filters={"days": days, "on": on},
        build=lambda connection: service.slow_moving(
            connection,
            days=days,
            on=service.end_of(on, "on"),
            site_id=site_id,
            visible=visible,
            financial=financial,
        ),
    )


@router.get("/expiry", dependencies=[STOCK_READ], responses=_RESPONSES)
async def expiry(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    on: Annotated[date | None, Query(description="days left counted from this day")] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    item: Annotated[Code | None, Query()] = None,
    format: FormatQuery = "json",
) -> ReportOut:
    """效期: lots on hand expired or expiring within 30, 60 and 90 days, soonest first,
    with their value for a financial reader."""
    _check_site(principal, site_id)
    financial, visible = principal.financial, principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="expiry",
        fmt=format,
        site_id=site_id,
        filters={"on": on, "item": item},
        build=lambda connection: service.expiry(
            connection, on=on, site_id=site_id, item=item, visible=visible, financial=financial
        ),
    )


@router.get("/turnover", dependencies=[MARGIN_READ], responses=_RESPONSES)
async def turnover(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    since: Annotated[date, Query(description="the period's first day")],
    until: Annotated[date, Query(description="its last day (inclusive)")],
    site_id: Annotated[SiteId | None, Query()] = None,
    format: FormatQuery = "json",
) -> ReportOut:
    """周转: cost of goods over the average stock value per (site, item) in a period,
    and the days of stock that makes; fastest first."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    _check_site(principal, site_id)
    visible = principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="turnover",
        fmt=format,
        site_id=site_id,
        filters={"since": since, "until": until},
        build=lambda connection: service.turnover(
            connection, since=since, until=until, site_id=site_id, visible=visible
        ),
    )


@router.get("/retail-takings", dependencies=[MARGIN_READ], responses=_RESPONSES)
async def retail_takings(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    since: Annotated[date | None, Query(description="the first day (UTC)")] = None,
    until: Annotated[date | None, Query(description="the last day (UTC, inclusive)")] = None,
    site_id: Annotated[SiteId | None, Query()] = None,
    format: FormatQuery = "json",
) -> ReportOut:
    """零售收款: the stores' counter takings per site, day and payment method (sold,
    refunded, net), latest day first."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    _check_site(principal, site_id)
    visible = principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="retail-takings",
        fmt=format,
        site_id=site_id,
        filters={"since": since, "until": until},
        build=lambda connection: service.retail_takings(
            connection, since=since, until=until, site_id=site_id, visible=visible
        ),
    )


@router.get("/sync-lag", dependencies=[STOCK_READ], responses=_RESPONSES)
async def sync_lag(
    request: Request,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    format: FormatQuery = "json",
) -> ReportOut:
    """同步延迟: per site with an edge, how far central holds its ledger and how long
    since it last pushed, the longest silent first."""
    visible = principal.sites
    return await _serve(  # type: ignore[no-any-return]
        request,
        audit,
        name="sync-lag",
        fmt=format,
        site_id=None,
        filters={},
        build=lambda connection: service.sync_lag(connection, visible=visible),
    )
