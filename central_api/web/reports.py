"""The console's report centre (报表中心): one page per report, its filters as a GET form,
the table, the totals, a chart where a picture reads better, and links to the CSV and
XLSX exports.

Thin over ``services/reports.py``, with the API routes' rules (``api/routes/reports.py``):
the same actions, the user's sites (a site filter outside them is a 403), the financial
columns left out by the service for a role without the group, and an audit entry for
every read. The export links are the API's own URLs with the page's filters: the session
cookie signs a GET, so the file is exactly what the API gives.

Charts are inline SVG drawn here (bars with their figures written beside them), so they
need no script, no library and no CDN, print, and read on a phone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import ForbiddenError, InvalidError, SiteOutOfScopeError
from central_api.services import reports as service
from central_api.web import i18n
from central_api.web.purchasing import _sites, url
from central_api.web.render import CONSOLE_ROOT, N_, environment, gettext_for, render
from jxc.contract import EventKind
from jxc.paths import REPORTS

pages = APIRouter(prefix=f"{CONSOLE_ROOT}/reports", include_in_schema=False)

ROOT: Final = f"{CONSOLE_ROOT}/reports"

Text = Annotated[str, Query(max_length=64)]


@dataclass(frozen=True, slots=True)
class ReportPage:
    """A report the console shows: its path word, title and one line on what it answers."""

    name: str
    title: str
    summary: str
    action: str
    financial_only: bool = False


REPORT_PAGES: Final = (
    ReportPage(
        "stock-on-hand",
        N_("Stock on hand"),
        N_("What is on hand per site, location, item and lot, now or on a past day."),
        "stock.read",
    ),
    ReportPage(
        "movements",
        N_("Movement ledger"),
        N_("Every movement in and out, filtered by site, item, kind, date and document."),
        "stock.read",
    ),
    ReportPage(
        "gross-margin",
        N_("Gross margin"),
        N_(
            "Invoiced and counter revenue against the cost of the goods sold, by item, "
            "category, customer, site or month."
        ),
        "valuation.read",
        financial_only=True,
    ),
    ReportPage(
        "slow-moving",
        N_("Slow-moving and dead stock"),
        N_("Stock that has not gone out for a number of days, or never."),
        "stock.read",
    ),
    ReportPage(
        "expiry",
        N_("Expiry"),
        N_("Lots expired or expiring within 30, 60 and 90 days."),
        "stock.read",
    ),
    ReportPage(
        "turnover",
        N_("Turnover"),
        N_("Cost of goods over the average stock value in a period, and the days of stock."),
        "valuation.read",
        financial_only=True,
    ),
    ReportPage(
        "retail-takings",
        N_("Counter takings"),
        N_("The stores' till per site, day and payment method: sold, refunded and net."),
        "valuation.read",
        financial_only=True,
    ),
    ReportPage(
        "sync-lag",
        N_("Sync lag"),
        N_("How long since each site's edge last pushed its movements."),
        "stock.read",
    ),
)
BY_NAME: Final = {page.name: page for page in REPORT_PAGES}

COLUMN_LABELS: Final = (
    N_("Site"),
    N_("Location"),
    N_("Item code"),
    N_("Item name"),
    N_("Lot"),
    N_("Quantity"),
    N_("Unit"),
    N_("Unit cost"),
    N_("Value"),
    N_("Occurred at"),
    N_("Movement"),
    N_("Document"),
    N_("Reference"),
    N_("By"),
    N_("Booked by"),
    N_("Event"),
    N_("Value in"),
    N_("Cost of goods"),
    N_("Group"),
    N_("Name"),
    N_("Invoices"),
    N_("Revenue"),
    N_("Gross margin"),
    N_("Margin rate"),
    N_("Last out"),
    N_("Days without going out"),
    N_("Last in"),
    N_("Expiry"),
    N_("Expires on"),
    N_("Days left"),
    N_("Held through seq"),
    N_("Last push"),
    N_("Latest movement"),
    N_("Minutes since last push"),
    N_("Refused events"),
    N_("Opening value"),
    N_("Closing value"),
    N_("Turns"),
    N_("Days of stock"),
    N_("Counter receipts"),
    N_("Day"),
    N_("Payment method"),
    N_("Refund slips"),
    N_("Sold"),
    N_("Refunded"),
    N_("Net takings"),
)
"""Every column heading of ``services/reports.py``, marked for the catalogue here (the
service holds plain English msgids; the console and the file exports translate them)."""

WORDS: Final[dict[str, str]] = {
    "expired": N_("Expired"),
    "0-30": N_("0 to 30 days"),
    "31-60": N_("31 to 60 days"),
    "61-90": N_("61 to 90 days"),
    "edge": N_("Edge"),
    "central": N_("Central"),
    "receipt": N_("Receipt"),
    "issue": N_("Issue"),
    "sale": N_("Sale"),
    "return": N_("Return"),
    "transfer_out": N_("Transfer out"),
    "transfer_in": N_("Transfer in"),
    "adjustment": N_("Adjustment"),
    "scrap": N_("Scrap"),
    "item": N_("Item"),
    "category": N_("Category"),
    "customer": N_("Customer"),
    "site": N_("Site"),
    "month": N_("Month"),
    "cash": N_("Cash"),
    "card": N_("Card"),
    "mobile": N_("Mobile payment"),
    "voucher": N_("Voucher"),
}
"""Stored code words a report shows, and the choices of its filters."""


def _clean(value: str) -> str | None:
    text = "".join(c for c in value if c.isprintable()).strip()
    return text or None


def _day(value: str, name: str) -> date | None:
    text = _clean(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidError(f"{name}: a date such as 2026-12-01") from None


def _start(day: date | None, name: str = "since") -> datetime | None:
    return service.start_of(day, name)


def _end(day: date | None, name: str = "until") -> datetime | None:
    """The moment "on a day" means: the start of the next one."""
    return service.end_of(day, name)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    figure: str
    width: float
    """Share of the widest bar, 0 to 100 (of the chart's bar area)."""
    negative: bool


def bars(pairs: list[tuple[str, Decimal]], show: Callable[[Decimal], str]) -> list[Bar]:
    """The chart's bars: each as long as its figure against the largest (by magnitude)."""
    widest = max((abs(value) for _label, value in pairs), default=Decimal(0))
    return [
        Bar(
            label=label,
            figure=show(value),
            width=float(abs(value) / widest * 100) if widest else 0.0,
            negative=value < 0,
        )
        for label, value in pairs
    ]


def _page(
    request: Request,
    principal: Principal,
    page: ReportPage,
    *,
    connection: Connection,
    audit: Any,
    site: str | None,
    filters: dict[str, Any],
    build: Callable[[Connection], service.Report],
    export: dict[str, Any],
    chart: Callable[[service.Report], list[Bar]] | None = None,
) -> HTMLResponse:
    """Read, audit and render one report page; a filter that is not valid is shown on the
    page (422) rather than answered as an error, so the user can correct it."""
    _ = gettext_for(i18n.language_of(request))
    if site is not None and not principal.sees_site(site):
        raise SiteOutOfScopeError(who=principal.label, site_id=site)
    report, problem = None, ""
    try:
        report = build(connection)
    except InvalidError as refusal:
        problem = str(refusal)
    if report is not None:
        service.record_read(
            connection,
            audit,
            name=page.name,
            site_id=site,
            filters={k: v for k, v in export.items() if k != "format"},
            fmt="page",
            rows=len(report.rows),
        )
    api = f"{REPORTS}/{page.name}"
    return render(
        request,
        f"report_{page.name.replace('-', '_')}.html",
        {
            "page": page,
            "report": report,
            "problem": problem,
            "filters": filters,
            "sites": _sites(connection, principal),
            "words": WORDS,
            "csv_url": url(api, **export, format="csv"),
            "xlsx_url": url(api, **export, format="xlsx"),
            "bars": chart(report) if chart is not None and report is not None else [],
            "reports_root": ROOT,
            "column_labels": {} if report is None else {c.key: c.label for c in report.columns},
        },
        principal=principal,
        status_code=422 if problem else 200,
    )


@pages.get("", dependencies=[Requires("stock.read")])
def reports_index(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """The report centre's list of reports the user may open."""
    shown = [
        page
        for page in REPORT_PAGES
        if principal.can(page.action) and (principal.financial or not page.financial_only)
    ]
    return render(
        request, "report_index.html", {"reports": shown, "reports_root": ROOT}, principal=principal
    )


@pages.get("/stock-on-hand", dependencies=[Requires("stock.read")])
def stock_on_hand_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site: Text = "",
    item: Text = "",
    location: Text = "",
    on: Text = "",
) -> HTMLResponse:
    """库存明细, now or at the end of a past day."""
    site_id = _clean(site)
    filters = {"site": site_id or "", "item": item, "location": location, "on": on}

    def build(connection: Connection) -> service.Report:
        as_of = _end(_day(on, "on"), "on")
        chosen = service.StockFilter(
            site_id=site_id,
            item=_clean(item),
            location=_clean(location),
            visible=principal.sites,
        )
        return service.stock_on_hand(connection, chosen, as_of=as_of, financial=principal.financial)

    as_of_text = _clean(on)
    return _page(
        request,
        principal,
        BY_NAME["stock-on-hand"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=build,
        export={
            "site_id": site_id,
            "item": _clean(item),
            "location": _clean(location),
            "as_of": f"{as_of_text}T23:59:59.999999Z" if as_of_text else None,
        },
    )


@pages.get("/movements", dependencies=[Requires("stock.read")])
def movements_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site: Text = "",
    item: Text = "",
    kind: Text = "",
    doc: Text = "",
    since: Text = "",
    until: Text = "",
    after: Annotated[str, Query(max_length=200)] = "",
) -> HTMLResponse:
    """进出库流水, 100 rows a page, oldest first; ``until`` is inclusive here (a day)."""
    site_id = _clean(site)
    kinds = [kind.value for kind in EventKind]
    chosen_kind = _clean(kind)
    filters: dict[str, Any] = {
        "site": site_id or "",
        "item": item,
        "kind": chosen_kind or "",
        "doc": doc,
        "since": since,
        "until": until,
        "kinds": kinds,
    }

    def build(connection: Connection) -> service.Report:
        if chosen_kind is not None and chosen_kind not in kinds:
            raise InvalidError(f"kind: one of {', '.join(kinds)}")
        chosen = service.MovementFilter(
            site_id=site_id,
            item=_clean(item),
            kind=chosen_kind,
            doc_id=_clean(doc),
            since=_start(_day(since, "since")),
            until=_end(_day(until, "until")),
        )
        return service.movements(
            connection,
            chosen,
            after=_clean(after),
            limit=100,
            visible=principal.sites,
            financial=principal.financial,
        )

    since_day, until_day = _clean(since), _clean(until)
    filters["next"] = {
        key: value
        for key, value in {
            "site": site_id,
            "item": _clean(item),
            "kind": chosen_kind,
            "doc": _clean(doc),
            "since": since_day,
            "until": until_day,
        }.items()
        if value is not None
    }
    return _page(
        request,
        principal,
        BY_NAME["movements"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=build,
        export={
            "site_id": site_id,
            "item": _clean(item),
            "kind": chosen_kind,
            "doc_id": _clean(doc),
            "since": f"{since_day}T00:00:00Z" if since_day else None,
            "until": f"{until_day}T23:59:59.999999Z" if until_day else None,
        },
    )


@pages.get("/gross-margin", dependencies=[Requires("valuation.read")])
def gross_margin_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    by: Text = "item",
    site: Text = "",
    since: Text = "",
    until: Text = "",
) -> HTMLResponse:
    """毛利分析 with the top ten margins as a bar chart."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    site_id = _clean(site)
    group = _clean(by) or "item"
    filters = {
        "by": group,
        "site": site_id or "",
        "since": since,
        "until": until,
        "groups": service.MARGIN_GROUPS,
    }
    locale = i18n.language_of(request).locale

    def build(connection: Connection) -> service.Report:
        return service.gross_margin(
            connection,
            by=group,
            since=_day(since, "since"),
            until=_day(until, "until"),
            site_id=site_id,
            visible=principal.sites,
        )

    money = environment(locale).filters["money"]
    return _page(
        request,
        principal,
        BY_NAME["gross-margin"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=build,
        export={
            "by": group,
            "site_id": site_id,
            "since": _clean(since),
            "until": _clean(until),
        },
        chart=lambda report: bars([(key or "—", value) for key, value in report.chart], money),
    )


@pages.get("/slow-moving", dependencies=[Requires("stock.read")])
def slow_moving_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    days: Text = "90",
    site: Text = "",
) -> HTMLResponse:
    """呆滞库存: on hand, and not gone out for ``days`` days."""
    site_id = _clean(site)
    filters = {"days": days, "site": site_id or ""}

    def build(connection: Connection) -> service.Report:
        try:
            count = int(_clean(days) or "90")
        except ValueError:
            raise InvalidError("days: a whole number of days, 1 to 36500") from None
        return service.slow_moving(
            connection,
            days=count,
            site_id=site_id,
            visible=principal.sites,
            financial=principal.financial,
        )

    return _page(
        request,
        principal,
        BY_NAME["slow-moving"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=build,
        export={"days": _clean(days), "site_id": site_id},
    )


@pages.get("/expiry", dependencies=[Requires("stock.read")])
def expiry_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site: Text = "",
    item: Text = "",
) -> HTMLResponse:
    """效期 with the buckets as a bar chart (value, or number of lots without money)."""
    site_id = _clean(site)
    filters = {"site": site_id or "", "item": item}
    _ = gettext_for(i18n.language_of(request))
    locale = i18n.language_of(request).locale
    money = environment(locale).filters["money"]

    def show(value: Decimal) -> str:
        return str(money(value)) if principal.financial else format(value, "f")

    return _page(
        request,
        principal,
        BY_NAME["expiry"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=lambda connection: service.expiry(
            connection,
            site_id=site_id,
            item=_clean(item),
            visible=principal.sites,
            financial=principal.financial,
        ),
        export={"site_id": site_id, "item": _clean(item)},
        chart=lambda report: bars([(_(WORDS[k]), v) for k, v in report.chart], show),
    )


@pages.get("/turnover", dependencies=[Requires("valuation.read")])
def turnover_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site: Text = "",
    since: Text = "",
    until: Text = "",
) -> HTMLResponse:
    """周转 over a period, the last 30 days unless chosen."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    site_id = _clean(site)
    today = datetime.now(UTC).date()
    first = _clean(since) or (today - timedelta(days=29)).isoformat()
    last = _clean(until) or today.isoformat()
    filters = {"site": site_id or "", "since": first, "until": last}

    def build(connection: Connection) -> service.Report:
        start, end = _day(first, "since"), _day(last, "until")
        assert start is not None
        assert end is not None
        return service.turnover(
            connection, since=start, until=end, site_id=site_id, visible=principal.sites
        )

    return _page(
        request,
        principal,
        BY_NAME["turnover"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=build,
        export={"site_id": site_id, "since": first, "until": last},
    )


@pages.get("/retail-takings", dependencies=[Requires("valuation.read")])
def retail_takings_page(
    request: Request,
    connection: ConnDep,
    principal: PrincipalDep,
    audit: AuditDep,
    *,
    site: Text = "",
    since: Text = "",
    until: Text = "",
) -> HTMLResponse:
    """零售收款 over a period, the last 7 days unless chosen."""
    if not principal.financial:
        raise ForbiddenError("your roles do not show values or costs, so you may not read them")
    site_id = _clean(site)
    today = datetime.now(UTC).date()
    first = _clean(since) or (today - timedelta(days=6)).isoformat()
    last = _clean(until) or today.isoformat()
    filters = {"site": site_id or "", "since": first, "until": last}

    def build(connection: Connection) -> service.Report:
        return service.retail_takings(
            connection,
            since=_day(first, "since"),
            until=_day(last, "until"),
            site_id=site_id,
            visible=principal.sites,
        )

    return _page(
        request,
        principal,
        BY_NAME["retail-takings"],
        connection=connection,
        audit=audit,
        site=site_id,
        filters=filters,
        build=build,
        export={"site_id": site_id, "since": first, "until": last},
    )


@pages.get("/sync-lag", dependencies=[Requires("stock.read")])
def sync_lag_page(
    request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
) -> HTMLResponse:
    """同步延迟 per site, the longest silent first."""
    return _page(
        request,
        principal,
        BY_NAME["sync-lag"],
        connection=connection,
        audit=audit,
        site=None,
        filters={},
        build=lambda connection: service.sync_lag(connection, visible=principal.sites),
        export={},
    )
