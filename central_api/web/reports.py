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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from central_api.api.auditing import AuditDep
from central_api.api.deps import ConnDep
from central_api.api.permissions import Requires
from central_api.api.report_specs import SPECS, Reader, ReportSpec
from central_api.core.principal import Principal, PrincipalDep
from central_api.errors import InvalidError
from central_api.services import reports as service
from central_api.services.valuation import settle_for_reading
from central_api.web import i18n
from central_api.web.purchasing import _sites, url
from central_api.web.render import CONSOLE_ROOT, N_, environment, gettext_for, render
from jxc.paths import REPORTS

pages = APIRouter(prefix=f"{CONSOLE_ROOT}/reports", include_in_schema=False)

ROOT: Final = f"{CONSOLE_ROOT}/reports"


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
    N_("Count sessions"),
    N_("Lines counted"),
    N_("Lines without a variance"),
    N_("Count accuracy"),
    N_("Value counted"),
    N_("Value counted right"),
    N_("Value-weighted accuracy"),
    N_("Current (not yet due)"),
    N_("1–30 days past due"),
    N_("31–60 days past due"),
    N_("61–90 days past due"),
    N_("Over 90 days past due"),
    N_("Outstanding"),
    N_("Days stocked"),
    N_("Days out of stock"),
    N_("Stock-out rate"),
    N_("Closing quantity"),
    N_("Supplier"),
    N_("At the PO's price"),
    N_("As invoiced"),
    N_("Price variance"),
    N_("Variance rate"),
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


def _chart(
    request: Request, principal: Principal, spec: ReportSpec, report: service.Report
) -> list[Bar]:
    """The spec's chart of the report's ``chart`` pairs: the top N by money, code-word
    buckets (money for a financial reader, else counts) or a rate per key."""
    locale = i18n.language_of(request).locale
    shown = environment(locale).filters
    if spec.chart == "top":
        return bars([(key or "—", value) for key, value in report.chart], shown["money"])
    if spec.chart == "rates":
        return bars(report.chart, shown["percent"])
    if spec.chart == "buckets":
        _ = gettext_for(i18n.language_of(request))

        def show(value: Decimal) -> str:
            return str(shown["money"](value)) if principal.financial else format(value, "f")

        labels = {column.key: column.label for column in report.columns}
        return bars(
            [(_(labels.get(key) or WORDS[key]), value) for key, value in report.chart], show
        )
    return []


def _page_route(spec: ReportSpec) -> None:
    """``/console/reports/<name>``: the spec's filters read from the page's GET form (a
    value that is not valid shown above the table with a 422, so the user can correct
    it), the spec's checks, the read, its audit entry (the export link's filters), the
    table and the chart."""

    def page(
        request: Request, connection: ConnDep, principal: PrincipalDep, audit: AuditDep
    ) -> HTMLResponse:
        today = datetime.now(UTC).date()
        texts: dict[str, str | None] = {}
        for chosen in spec.page_filters:
            name = chosen.page_name
            assert name is not None
            raw = request.query_params.get(name, "")
            if len(raw) > chosen.page_limit:
                raise InvalidError(f"{name}: at most {chosen.page_limit} characters")
            given = _clean(raw)
            if given is None and chosen.page_default is not None:
                given = chosen.page_default(today)
            texts[chosen.name] = given
        site_id = texts.get("site_id")
        spec.check(principal, site_id)
        report, problem = None, ""
        settle_for_reading(connection)
        try:
            values = {f.name: f.from_page(texts.get(f.name)) for f in spec.filters}
            report = spec.build(connection, Reader.of(principal), values)
        except InvalidError as refusal:
            problem = str(refusal)
        export = {
            f.name: f.exported(texts[f.name])
            for f in spec.page_filters
            if f.kind not in ("cursor", "limit")
        }
        if report is not None:
            service.record_read(
                connection,
                audit,
                name=spec.name,
                site_id=site_id,
                filters=export,
                fmt="page",
                rows=len(report.rows),
            )
        api = f"{REPORTS}/{spec.name}"
        shown = {f.page_name: texts[f.name] or f.default or "" for f in spec.page_filters}
        return render(
            request,
            f"report_{spec.name.replace('-', '_')}.html",
            {
                "page": spec,
                "report": report,
                "problem": problem,
                "filters": shown,
                "choices": {f.page_name: f.choices for f in spec.page_filters if f.choices},
                "next": {
                    f.page_name: texts[f.name]
                    for f in spec.page_filters
                    if f.kind != "cursor" and texts[f.name] is not None
                },
                "sites": _sites(connection, principal),
                "words": WORDS,
                "csv_url": url(api, **export, format="csv"),
                "xlsx_url": url(api, **export, format="xlsx"),
                "bars": [] if report is None else _chart(request, principal, spec, report),
                "reports_root": ROOT,
                "column_labels": {} if report is None else {c.key: c.label for c in report.columns},
                "column_kinds": {} if report is None else {c.key: c.kind for c in report.columns},
            },
            principal=principal,
            status_code=422 if problem else 200,
        )

    page.__name__ = f"{spec.name.replace('-', '_')}_page"
    page.__doc__ = spec.doc
    pages.get(f"/{spec.name}", dependencies=[Requires(spec.action)])(page)


@pages.get("", dependencies=[Requires("stock.read")])
def reports_index(request: Request, principal: PrincipalDep) -> HTMLResponse:
    """The report centre's list of reports the user may open."""
    shown = [spec for spec in SPECS if spec.may_read(principal)]
    return render(
        request, "report_index.html", {"reports": shown, "reports_root": ROOT}, principal=principal
    )


for _spec in SPECS:
    _page_route(_spec)
